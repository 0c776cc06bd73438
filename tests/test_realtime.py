"""Real-time scoring: streamed windows score like the same audio offline."""

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data import toy_clip
from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.realtime import StreamingScorer, stream_file
from stethoscope.systems import get_system

QUIET = RunContext(progress=False)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """A tiny dcase_ae fitted on four 3 s toy fan clips (read-only for the tests)."""
    tmp = tmp_path_factory.mktemp("rt")
    clips = []
    for i in range(4):
        wave, _ = toy_clip("fan", seed=i, seconds=3.0)
        sf.write(tmp / f"n{i}.wav", wave, 16000)
        clips.append(Clip(path=tmp / f"n{i}.wav", machine="fan"))
    sys_ = get_system("dcase_ae", epochs=2, batch_size=64)
    return sys_.fit(clips, ctx=RunContext(progress=False, cache_dir=tmp / "c")), clips


def test_stream_windows_equal_offline_scores(system):
    sys_, _ = system
    wave, _ = toy_clip("fan", seed=11, seconds=5.0)
    scorer = StreamingScorer(sys_, window_seconds=2.0, hop_seconds=0.5, ctx=QUIET)
    results = list(stream_file(scorer, wave, chunk=1000))
    ends = np.array([r.end_seconds for r in results])
    np.testing.assert_allclose(
        ends, np.arange(2.0, 5.01, 0.5), atol=1e-9
    )  # windows end at 2.0, 2.5, ..., 5.0 s
    picked = [int(np.argmin(np.abs(ends - e))) for e in (2.0, 3.5, 5.0)]
    offline = sys_.score_waveforms(
        [wave[int((e - 2.0) * 16000) : int(e * 16000)] for e in (2.0, 3.5, 5.0)], ctx=QUIET
    )
    np.testing.assert_allclose([results[i].score for i in picked], offline, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal([results[i].decision for i in picked], sys_.decide(offline))
    for i, e in zip(
        picked, (2.0, 3.5, 5.0), strict=True
    ):  # each result carries the samples it scored
        np.testing.assert_array_equal(
            results[i].window, wave[int((e - 2.0) * 16000) : int(e * 16000)]
        )


def test_score_waveforms_matches_file_scores(system):
    sys_, clips = system
    wave = sf.read(str(clips[0].path), dtype="float32")[0]
    np.testing.assert_allclose(
        sys_.score_waveforms([wave], ctx=QUIET), sys_.score(clips[:1], QUIET), rtol=1e-4, atol=1e-9
    )


def test_chunk_size_does_not_change_results(system):
    sys_, _ = system
    wave, _ = toy_clip("fan", seed=12, seconds=4.0)
    a = [r.score for r in stream_file(StreamingScorer(sys_, 2.0, 1.0, ctx=QUIET), wave, chunk=512)]
    b = [r.score for r in stream_file(StreamingScorer(sys_, 2.0, 1.0, ctx=QUIET), wave, chunk=7000)]
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_bad_input_is_refused(system):
    sys_, _ = system
    with pytest.raises(ValueError, match="NaN"):
        StreamingScorer(sys_, 2.0, 1.0).push(np.array([np.nan]))
    for window, hop in ((2.0, 0.0), (0.0, 1.0), (-1.0, 1.0), (2.0, -0.5)):
        with pytest.raises(ConfigError, match="positive"):
            StreamingScorer(sys_, window_seconds=window, hop_seconds=hop)
