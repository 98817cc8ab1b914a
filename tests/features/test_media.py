"""features.media: subprocess plumbing — no shell, safe file names, timeouts, output caps, clear errors."""

from __future__ import annotations

import sys
import time

import pytest

from features.media import SIDE_OUTPUT, MediaError, ffmpeg_bin, ffprobe_bin, media_url, run_tool, run_tool_capture


def test_binaries_found_on_path():
    assert ffmpeg_bin().endswith("ffmpeg")
    assert ffprobe_bin().endswith("ffprobe")


def test_missing_binary_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDPIPE_FFMPEG", str(tmp_path / "nope"))
    with pytest.raises(MediaError, match="ffmpeg"):
        ffmpeg_bin()
    monkeypatch.delenv("VIDPIPE_FFMPEG")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MediaError, match="apt-get install ffmpeg"):
        ffprobe_bin()


def test_media_url_is_absolute_file_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = media_url("-rf name:with colon.mp4")
    assert url == f"file:{tmp_path}/-rf name:with colon.mp4"
    assert not url.startswith("-")


def test_run_tool_returns_stdout_and_never_uses_a_shell():
    out = run_tool(["/bin/echo", "$HOME; rm -rf /"], timeout=5)
    assert out == b"$HOME; rm -rf /\n"


def test_run_tool_nonzero_exit_quotes_stderr():
    with pytest.raises(MediaError, match="No such file or directory"):
        run_tool([ffprobe_bin(), "-v", "error", "file:/definitely/not/here.mp4"], timeout=10)


def test_run_tool_kills_on_timeout():
    start = time.monotonic()
    with pytest.raises(MediaError, match="longer than the 0.5 s limit"):
        run_tool([ffmpeg_bin(), "-v", "error", "-re", "-f", "lavfi", "-i", "nullsrc=s=16x16:r=5", "-f", "null", "-"],
                 timeout=0.5)
    assert time.monotonic() - start < 5


def test_run_tool_caps_output():
    with pytest.raises(MediaError, match="more than 1000 bytes"):
        run_tool([ffmpeg_bin(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x64:d=5", "-f", "rawvideo",
                  "pipe:1"], timeout=20, max_output_bytes=1000)


def test_run_tool_capture_keeps_and_counts_stderr_lines():
    result = run_tool_capture(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "level+info", "-f", "lavfi", "-i", "testsrc2=s=16x16:r=5:d=1",
         "-vf", "showinfo", "-f", "null", "-"],
        10, keep_stderr=r"Parsed_showinfo.*\bn:", count_stderr=r"^\[error\]",
    )
    assert result.returncode == 0
    assert len(result.stderr_kept) == 5
    assert result.stderr_counted == 0


_CHILD = "import os, sys; os.write(int(sys.argv[1].split(':')[1]), b'side-bytes'); print('out', end='')"


def test_side_output_pipe_is_captured_capped_and_required():
    got = run_tool_capture([sys.executable, "-c", _CHILD, SIDE_OUTPUT], 30, side_output_bytes=100)
    assert (got.stdout, got.side, got.returncode) == (b"out", b"side-bytes", 0)
    assert run_tool_capture([sys.executable, "-c", "print('x', end='')"], 30).side == b""
    with pytest.raises(MediaError, match="more than"):
        run_tool_capture([sys.executable, "-c", _CHILD, SIDE_OUTPUT], 30, side_output_bytes=4)
    with pytest.raises(ValueError, match="side_output_bytes"):
        run_tool_capture([sys.executable, "-c", _CHILD], 30, side_output_bytes=100)


@pytest.mark.parametrize("bad", [[], "ffmpeg -v", ["ffmpeg", 3]])
def test_run_tool_rejects_bad_args(bad):
    with pytest.raises(ValueError, match="args"):
        run_tool(bad, timeout=1)


def test_run_tool_rejects_bad_timeout():
    with pytest.raises(ValueError, match="timeout"):
        run_tool(["/bin/true"], timeout=0)
