"""The `repeat` reader option used by soak tests and benchmarks."""

from popdistill.data.readers import create_reader
from tests.data.fixtures import build_davis


def test_repeat_lists_each_video_n_times_with_own_ids(tmp_path):
    build_davis(tmp_path)
    plain = create_reader("davis", tmp_path)
    refs = plain.videos()
    frames = {r.video: [f.frame for f in plain.read_video(r)] for r in refs}
    rep = create_reader("davis", tmp_path, repeat="3")
    rrefs = rep.videos()
    assert len(rrefs) == 3 * len(refs)
    assert len({r.video for r in rrefs}) == len(rrefs)
    for r in rrefs:
        original = r.video.split("~")[0]
        recs = list(rep.read_video(r))
        assert [f.frame for f in recs] == frames[original]
        assert all(f.video == r.video for f in recs)
