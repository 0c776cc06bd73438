"""Reports: anomaly-map pictures (`maps`) and the self-contained HTML/Markdown report (`html`)."""

from .html import build_report
from .maps import plot_anomaly_map, save_anomaly_map_png

__all__ = ["build_report", "plot_anomaly_map", "save_anomaly_map_png"]
