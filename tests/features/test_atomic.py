import fsspec
import pytest

from features.atomic import atomic_file, atomic_write


def test_atomic_write_creates_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "er" / "a.json"
    atomic_write(path, "first")
    atomic_write(str(path), b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    with pytest.raises(TypeError, match="data: expected bytes or str, got int"):
        atomic_write(path, 3)


def test_a_failed_writer_leaves_the_old_file(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half"):
        with atomic_file(path) as tmp:
            assert tmp.parent == path.parent and tmp.suffix == ".png" and tmp.name.startswith(".tmp-")
            tmp.write_bytes(b"ne")
            raise RuntimeError("half-written")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_object_stores_get_one_put(tmp_path):
    fs = fsspec.filesystem("memory")
    calls = []
    pipe = fs.pipe_file
    fs.pipe_file = lambda path, data, **kw: (calls.append(path), pipe(path, data, **kw))
    atomic_write("/bucket/x/r.json", "{}", fs=fs)
    assert calls == ["/bucket/x/r.json"] and fs.cat_file("/bucket/x/r.json") == b"{}"
    atomic_write(tmp_path / "local.txt", "x", fs=fsspec.filesystem("file"))  # a local fsspec filesystem: the OS path
    assert (tmp_path / "local.txt").read_text() == "x"
