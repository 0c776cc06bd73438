import numpy as np
import pytest

from stethoscope.data import toy_clip
from stethoscope.realtime import StreamingScorer, stream_file
from stethoscope.systems import get_system


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    import soundfile as sf

    from stethoscope.data.clip import Clip

    tmp = tmp_path_factory.mktemp("rt")
    clips = []
    for i in range(4):
        wave, _ = toy_clip("fan", seed=i, seconds=3.0)
        sf.write(tmp / f"n{i}.wav", wave, 16000)
        clips.append(Clip(path=tmp / f"n{i}.wav", machine="fan"))
    sys_ = get_system("dcase_ae", epochs=2, batch_size=64, progress=False, cache_dir=str(tmp / "c"))
    return sys_.fit(clips), clips


def test_stream_windows_equal_offline_scores(system):
    sys_, clips = system
    wave, _ = toy_clip("fan", seed=11, seconds=5.0)
    scorer = StreamingScorer(sys_, window_seconds=2.0, hop_seconds=0.5)
    results = list(stream_file(scorer, wave, chunk=1000))
    # windows end at 2.0, 2.5, ..., 5.0 s
    assert [r.end_seconds for r in results] == pytest.approx(np.arange(2.0, 5.01, 0.5))
    offline = sys_.score_waveforms([wave[int((e - 2.0) * 16000):int(e * 16000)] for e in (2.0, 3.5, 5.0)])
    streamed = [r.score for r in results if r.end_seconds in (2.0, 3.5, 5.0)]
    np.testing.assert_allclose(streamed, offline, rtol=1e-5)


def test_score_waveforms_matches_file_scores(system):
    import soundfile as sf

    sys_, clips = system
    wave = sf.read(str(clips[0].path), dtype="float32")[0]
    np.testing.assert_allclose(sys_.score_waveforms([wave]), sys_.score(clips[:1]), rtol=1e-4)


def test_chunk_size_does_not_change_results(system):
    sys_, _ = system
    wave, _ = toy_clip("fan", seed=12, seconds=4.0)
    a = [r.score for r in stream_file(StreamingScorer(sys_, 2.0, 1.0), wave, chunk=512)]
    b = [r.score for r in stream_file(StreamingScorer(sys_, 2.0, 1.0), wave, chunk=7000)]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError):
        StreamingScorer(sys_, 2.0, 1.0).push(np.array([np.nan]))
