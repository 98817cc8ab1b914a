"""ffmpeg / ffprobe plumbing shared by the media extractors.

Everything that starts an external media tool goes through :func:`run_tool` (or :func:`run_tool_capture`):

* an argument list, never a shell, so file names with spaces, quotes, ``$`` or unicode are inert;
* file names are handed to the tools as ``file:`` URLs of absolute paths (:func:`media_url`), so a name that starts
  with ``-`` is never read as an option and a name with a ``:`` is never read as a protocol (``http:``, ``concat:``);
* a wall-clock timeout after which the tool is killed, and an optional cap on the bytes it may write to stdout, so a
  hostile or broken file can neither hang a worker nor exhaust its memory;
* a cap on the tool's own address space (``RLIMIT_AS``, default :data:`DEFAULT_TOOL_MEMORY_MB` MiB, overridden by
  ``$VIDPIPE_TOOL_MEMORY_MB`` or the ``memory_mb`` argument; ``0`` = no cap), so a decompression bomb that slips past
  the header checks makes ffmpeg fail with "Cannot allocate memory" instead of swapping the machine to death;
* every ``file:`` input of ffmpeg / ffprobe may only be opened by the container demuxers in :data:`DEMUXERS`
  (``-format_whitelist``): playlist formats (HLS, concat, DASH...) are refused, because an ``.m3u8`` renamed
  ``clip.mp4`` would otherwise make ffmpeg read any file it names (``/home/me/.ssh/...``), outside the dataset;
* on timeout or overflow the tool's whole process group is killed (it runs in a session of its own);
* every failure is a :class:`MediaError` whose message names the file, says what went wrong and what to do.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "AUDIO_ALIGN",
    "DEFAULT_TOOL_MEMORY_MB",
    "DEMUXERS",
    "MediaError",
    "SIDE_OUTPUT",
    "ToolResult",
    "ffmpeg_bin",
    "ffprobe_bin",
    "media_url",
    "pcm_args",
    "run_tool",
    "run_tool_capture",
    "tool_message",
]

_INSTALL_HINT = (
    "install FFmpeg (Debian/Ubuntu: `apt-get install ffmpeg`; macOS: `brew install ffmpeg`) "
    "or put the binary on PATH"
)
# stderr lines kept verbatim besides those matching keep_stderr: enough context for an error message.
_STDERR_TAIL_LINES = 60
_READ_CHUNK = 1 << 16
#: address-space cap (MiB) of every ffmpeg/ffprobe process unless ``$VIDPIPE_TOOL_MEMORY_MB`` or ``memory_mb`` says
#: otherwise. ffmpeg maps ~300 MiB of shared libraries before doing anything; 4 GiB leaves room for 8K frames with
#: frame threading and stops a bomb long before a worker machine runs out of memory.
DEFAULT_TOOL_MEMORY_MB = 4096
#: demuxers allowed to open a ``file:`` input (ffmpeg's ``-format_whitelist``): the containers of
#: ``features.sources._common.MEDIA_EXTENSIONS`` (animated GIF / APNG included) plus raw streams and the audio formats
#: (so an audio-only file is still reported as "audio-only"). No playlist / indirection formats (hls, concat, dash,
#: image2, tee...).
DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,asf,mpeg,mpegts,ogg,yuv4mpegpipe,h264,hevc,m4v,"
            "mpegvideo,ivf,obu,mxf,nut,dv,gif,apng,wav,mp3,aac,flac")
#: audio filter of every PCM decode: samples follow the track's timestamps on the file's timeline (which starts at
#: the earliest stream's start, as frame times do). A track that starts after the video (an MP4 edit list, a late
#: ``start_time``) is padded with silence at its start instead of being shifted early, and ``first_pts`` turns on
#: ffmpeg's timestamp compensation, which also fills a gap of more than 0.1 s inside the track with silence.
AUDIO_ALIGN = "aresample=first_pts=0"
#: stands for the second output pipe in the arguments of :func:`run_tool_capture` (``side_output_bytes``)
SIDE_OUTPUT = "pipe:vidpipe-side"
_OOM_RE = re.compile(r"Cannot allocate memory|failed to map segment|[Oo]ut of memory")


class MediaError(ValueError):
    """A media file cannot be used: the message says which file, what is wrong and what to do.

    Subclasses ``ValueError`` because the cause is (almost always) the input file, not the code. The pipeline
    records the message as the per-video failure.
    """


@dataclass(frozen=True)
class ToolResult:
    """What an external tool produced."""

    stdout: bytes  # everything the tool wrote to stdout (capped by max_output_bytes)
    stderr_kept: tuple[str, ...]  # stderr lines that matched keep_stderr, in order, none dropped
    stderr_tail: tuple[str, ...]  # the last stderr lines that did not match keep_stderr
    stderr_lines: int  # number of stderr lines that did not match keep_stderr (the tail may be shorter)
    stderr_counted: int  # number of stderr lines that matched count_stderr
    returncode: int  # the tool's exit status
    seconds: float  # wall-clock run time
    side: bytes = b""  # what the tool wrote to its second output pipe (run_tool_capture's side_output_bytes)


def _which(name: str, env_var: str) -> str:
    override = os.environ.get(env_var)
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise MediaError(f"{env_var}={override!r} is not an executable file; unset it or point it at {name}")
        return override
    found = shutil.which(name)
    if found is None:
        raise MediaError(f"`{name}` was not found on PATH; {_INSTALL_HINT}")
    return found


def ffmpeg_bin() -> str:
    """Absolute path of the ``ffmpeg`` executable (``$VIDPIPE_FFMPEG`` overrides PATH).

    Raises:
        MediaError: ffmpeg is not installed; the message says how to install it.
    """
    return _which("ffmpeg", "VIDPIPE_FFMPEG")


def ffprobe_bin() -> str:
    """Absolute path of the ``ffprobe`` executable (``$VIDPIPE_FFPROBE`` overrides PATH).

    Raises:
        MediaError: ffprobe is not installed; the message says how to install it.
    """
    return _which("ffprobe", "VIDPIPE_FFPROBE")


def media_url(path: str | os.PathLike[str]) -> str:
    """The safe way to name a local file on an ffmpeg command line: ``file:`` + its absolute path.

    An absolute path never starts with ``-`` (so it is never parsed as an option) and the explicit ``file:``
    protocol stops ffmpeg from interpreting ``name:rest`` as a protocol or ``%d`` patterns as image sequences.
    """
    return "file:" + os.path.abspath(os.fspath(path))


def _pump(stream, sink: bytearray, cap: int | None, overflow: threading.Event, proc: subprocess.Popen) -> None:
    """Copy ``stream`` into ``sink`` until EOF; past ``cap`` bytes set ``overflow`` and kill ``proc``."""
    while True:
        chunk = stream.read1(_READ_CHUNK)
        if not chunk:
            return
        if overflow.is_set():
            continue
        if cap is not None and len(sink) + len(chunk) > cap:
            overflow.set()
            _kill_group(proc)
            continue
        sink.extend(chunk)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the tool and anything it started (it leads its own session: ``start_new_session=True``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # already gone (or not a group leader): kill what is left
        proc.kill()


def _memory_cap_mb(memory_mb: int | None) -> int:
    """The address-space cap in MiB for one tool run (0 = none); see :data:`DEFAULT_TOOL_MEMORY_MB`."""
    if memory_mb is None:
        text = os.environ.get("VIDPIPE_TOOL_MEMORY_MB", "").strip()
        if not text:
            return DEFAULT_TOOL_MEMORY_MB
        try:
            memory_mb = int(text)
        except ValueError:
            raise ValueError(f"VIDPIPE_TOOL_MEMORY_MB={text!r}: expected a whole number of MiB (0 = no cap)") from None
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 0:
        raise ValueError(f"memory_mb={memory_mb!r}: expected a whole number of MiB >= 0 (0 = no cap)")
    return memory_mb


def _limit_address_space(memory_mb: int) -> tuple[list[str], Any]:
    """How to cap the child's address space: ``(argv prefix, preexec_fn)``; ``([], None)`` for no cap.

    With util-linux's ``prlimit`` on PATH the cap is applied by it (``prlimit --as=N -- tool ...``): the worker then
    starts the child with ``vfork`` (CPython uses it when there is no ``preexec_fn``), ~10 ms less per tool start
    from a 400-MB worker than the ``fork`` a ``preexec_fn`` forces, and the limit is in force before the tool's first
    instruction. Without ``prlimit`` the fallback is a ``preexec_fn``: a ``functools.partial`` of the C function
    ``resource.setrlimit``, so nothing runs Python code that could take a lock another thread held at fork time.
    The limit never exceeds the current hard limit (raising it would fail in the child).
    """
    if memory_mb == 0 or not hasattr(resource, "RLIMIT_AS"):
        return [], None
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb << 20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    prlimit = _prlimit_bin()
    if prlimit is not None:
        return [prlimit, f"--as={limit}:{'unlimited' if hard == resource.RLIM_INFINITY else hard}", "--"], None
    return [], functools.partial(resource.setrlimit, resource.RLIMIT_AS, (limit, hard))


@functools.lru_cache(maxsize=None)
def _prlimit_bin() -> str | None:
    return shutil.which("prlimit")


def _restrict_inputs(args: list[str]) -> list[str]:
    """``args`` with ``-format_whitelist DEMUXERS`` before every ``file:`` input of ffmpeg / ffprobe.

    ffmpeg inputs are the arguments after ``-i`` (the option goes before ``-i``); every ``file:`` argument of
    ffprobe is an input. Other programs are left alone.
    """
    prog = Path(args[0]).name
    is_ffmpeg, is_ffprobe = "ffmpeg" in prog, "ffprobe" in prog
    if not (is_ffmpeg or is_ffprobe) or "-format_whitelist" in args:  # not a media tool, or the caller chose
        return list(args)
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and arg.startswith("file:"):
            if args[i - 1] == "-i" and out and out[-1] == "-i":
                out[-1:] = ["-format_whitelist", DEMUXERS, "-i"]
            elif is_ffprobe:
                out += ["-format_whitelist", DEMUXERS]
        out.append(arg)
    return out


def _pump_lines(
    stream,
    pattern: re.Pattern[str] | None,
    counter: re.Pattern[str] | None,
    kept: list[str],
    tail: collections.deque,
    count: list[int],
) -> None:
    """Split stderr into lines: those matching ``pattern`` are all kept, the others only as a bounded tail;
    ``count[0]`` counts the others and ``count[1]`` the lines matching ``counter``."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if counter is not None and counter.search(line):
            count[1] += 1
        if pattern is not None and pattern.search(line):
            kept.append(line)
        else:
            count[0] += 1
            tail.append(line)


def pcm_args(stream_map: str, sr: int) -> list[str]:
    """Output options of every PCM decode: stream ``stream_map`` (``-map``) as mono float32 little-endian samples at
    ``sr`` Hz (channels averaged), on the file's timeline (:data:`AUDIO_ALIGN`). :func:`features.audio.load_audio`
    and the one-pass decode of :mod:`features.video` both use them, so their samples are identical."""
    return ["-map", stream_map, "-vn", "-sn", "-dn", "-af", AUDIO_ALIGN, "-ac", "1", "-ar", str(sr),
            "-f", "f32le", "-acodec", "pcm_f32le"]


def run_tool_capture(
    args: list[str],
    timeout: float,
    max_output_bytes: int | None = None,
    *,
    keep_stderr: str | None = None,
    count_stderr: str | None = None,
    what: str = "",
    memory_mb: int | None = None,
    side_output_bytes: int | None = None,
) -> ToolResult:
    """Run ``args`` (an argument list, never a shell) and return its output without judging the exit status.

    Args:
        args: program and arguments; ``args[0]`` should come from :func:`ffmpeg_bin` / :func:`ffprobe_bin`.
        timeout: seconds of wall-clock time after which the tool is killed.
        max_output_bytes: kill the tool once it writes more than this to stdout (``None``: no cap).
        keep_stderr: regular expression; matching stderr lines are all returned (e.g. ``showinfo`` lines), the rest
            only as a short tail.
        count_stderr: regular expression; the number of matching stderr lines is returned (e.g. decoder errors).
        what: the file or job the tool works on, used in error messages.
        memory_mb: address-space cap of the tool in MiB (``None``: ``$VIDPIPE_TOOL_MEMORY_MB`` or
            :data:`DEFAULT_TOOL_MEMORY_MB`; ``0``: no cap). A tool that hits it fails ("Cannot allocate memory").
        side_output_bytes: give the tool a second output pipe, capped at this many bytes (like stdout): the
            argument :data:`SIDE_OUTPUT` in ``args`` is replaced by ``pipe:<fd>`` of that pipe and what the tool
            writes there comes back as :attr:`ToolResult.side` — e.g. one ffmpeg writing frames to stdout and PCM to
            the side pipe, so a video is demuxed and decoded once.

    Raises:
        ValueError: ``args`` is not a non-empty list of strings, ``timeout`` is not positive or ``memory_mb`` is
            negative, or ``side_output_bytes`` is given without a :data:`SIDE_OUTPUT` argument.
        MediaError: the tool could not start, ran past ``timeout`` or wrote more than ``max_output_bytes`` (or
            ``side_output_bytes``).
    """
    _check_capture_args(args, timeout, max_output_bytes, side_output_bytes)
    label = what or Path(args[0]).name
    cap_prefix, preexec = _limit_address_space(_memory_cap_mb(memory_mb))
    pattern = re.compile(keep_stderr) if keep_stderr else None
    counter = re.compile(count_stderr) if count_stderr else None
    start = time.monotonic()
    proc, side_read = _start_tool(list(args), cap_prefix, preexec, side_output_bytes is not None, label)
    got = _read_until_exit(proc, side_read, deadline=start + timeout, max_output_bytes=max_output_bytes,
                           side_output_bytes=side_output_bytes, pattern=pattern, counter=counter)
    seconds = time.monotonic() - start
    if got.timed_out:
        raise MediaError(
            f"{Path(args[0]).name} on {label} ran longer than the {timeout:g} s limit and was killed; the file may be "
            "damaged or very long — raise the timeout if it is legitimately long"
        )
    if got.overflow:
        limit = max_output_bytes if side_output_bytes is None else \
            f"{max_output_bytes} (stdout) or {side_output_bytes} (side pipe)"
        raise MediaError(
            f"{Path(args[0]).name} on {label} produced more than {limit} bytes of output and was stopped; "
            "the file's stream parameters do not match what it declares"
        )
    return ToolResult(
        stdout=bytes(got.out),
        stderr_kept=tuple(got.kept),
        stderr_tail=tuple(got.tail),
        stderr_lines=got.count[0],
        stderr_counted=got.count[1],
        returncode=proc.returncode,
        seconds=seconds,
        side=bytes(got.side),
    )


def _check_capture_args(args: Any, timeout: float, max_output_bytes: int | None,
                        side_output_bytes: int | None) -> None:
    """Raise ValueError unless :func:`run_tool_capture`'s arguments are usable (see its Raises)."""
    if not isinstance(args, (list, tuple)) or not args or not all(isinstance(a, str) for a in args):
        raise ValueError(f"args must be a non-empty list of str, got {args!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if max_output_bytes is not None and max_output_bytes < 0:
        raise ValueError(f"max_output_bytes must be >= 0 or None, got {max_output_bytes!r}")
    if side_output_bytes is not None and (side_output_bytes < 0 or SIDE_OUTPUT not in args):
        raise ValueError(f"side_output_bytes={side_output_bytes!r}: expected >= 0 and a {SIDE_OUTPUT!r} argument")


def _start_tool(args: list[str], cap_prefix: list[str], preexec: Any, side: bool, label: str
                ) -> tuple[subprocess.Popen, int | None]:
    """Start the tool in a session of its own, stdout and stderr piped; with ``side`` also a second output pipe that
    replaces the :data:`SIDE_OUTPUT` argument. Returns the process and the read end of the side pipe (or None).

    Raises:
        MediaError: the tool could not start.
    """
    side_read = side_write = None
    if side:
        side_read, side_write = os.pipe()
        args = [f"pipe:{side_write}" if a == SIDE_OUTPUT else a for a in args]
    if cap_prefix and shutil.which(args[0]) is None:  # prlimit would start and then fail to exec it: say so here
        if side_read is not None:
            os.close(side_read)
            os.close(side_write)
        raise MediaError(f"could not start {args[0]!r} for {label}: no such executable; {_INSTALL_HINT}")
    try:
        proc = subprocess.Popen(
            [*cap_prefix, *_restrict_inputs(args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            shell=False,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the pipeline, not half of its tools
            preexec_fn=preexec,  # the memory cap (see _limit_address_space)
            pass_fds=() if side_write is None else (side_write,),
        )
    except OSError as exc:
        if side_read is not None:
            os.close(side_read)
        raise MediaError(f"could not start {args[0]!r} for {label}: {exc}; {_INSTALL_HINT}") from exc
    finally:
        if side_write is not None:
            os.close(side_write)  # the child holds its copy; EOF arrives when it exits
    return proc, side_read


@dataclass
class _Captured:
    """What a tool wrote before it exited or was killed (see :func:`_read_until_exit`)."""

    out: bytearray  # stdout, up to its cap
    side: bytearray  # the side pipe, up to its cap (empty without one)
    kept: list[str]  # stderr lines matching keep_stderr
    tail: collections.deque[str]  # the last other stderr lines
    count: list[int]  # [stderr lines not kept, stderr lines matching count_stderr]
    timed_out: bool  # killed at the deadline
    overflow: bool  # stopped for writing more than a cap


def _read_until_exit(proc: subprocess.Popen, side_read: int | None, *, deadline: float, max_output_bytes: int | None,
                     side_output_bytes: int | None, pattern: re.Pattern | None, counter: re.Pattern | None
                     ) -> _Captured:
    """Drain the tool's pipes on reader threads until it exits, killing its process group at ``deadline``."""
    got = _Captured(out=bytearray(), side=bytearray(), kept=[],
                    tail=collections.deque(maxlen=_STDERR_TAIL_LINES), count=[0, 0], timed_out=False, overflow=False)
    overflow = threading.Event()
    side_stream = open(side_read, "rb") if side_read is not None else None  # noqa: SIM115 - closed below
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, got.out, max_output_bytes, overflow, proc), daemon=True),
        threading.Thread(target=_pump_lines, args=(proc.stderr, pattern, counter, got.kept, got.tail, got.count),
                         daemon=True),
    ]
    if side_stream is not None:
        readers.append(threading.Thread(target=_pump, args=(side_stream, got.side, side_output_bytes, overflow, proc),
                                        daemon=True))
    for reader in readers:
        reader.start()
    # stdout reaches EOF when the tool exits (or is killed on overflow); joining the reader wakes up at once,
    # unlike Popen.wait(timeout=...), which polls with sleeps of up to 50 ms.
    readers[0].join(timeout=max(deadline - time.monotonic(), 0.0))
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
        got.timed_out = True
        _kill_group(proc)
        proc.wait()
    for reader in readers:
        reader.join(timeout=5.0)
    proc.stdout.close()
    proc.stderr.close()
    if side_stream is not None:
        side_stream.close()
    got.overflow = overflow.is_set()
    return got


def run_tool(args: list[str], timeout: float, max_output_bytes: int | None = None, *,
             memory_mb: int | None = None) -> bytes:
    """Run ``args`` (never through a shell) and return its stdout; any failure is a :class:`MediaError`.

    Args:
        args: program and arguments, e.g. ``[ffprobe_bin(), "-v", "error", ..., media_url(path)]``.
        timeout: seconds after which the tool is killed (then MediaError).
        max_output_bytes: kill the tool (then MediaError) once its stdout exceeds this many bytes.
        memory_mb: address-space cap in MiB (see :func:`run_tool_capture`).

    Raises:
        MediaError: the tool is missing, timed out, wrote too much or exited non-zero; the message quotes the
            last lines of its stderr.
    """
    result = run_tool_capture(args, timeout, max_output_bytes, memory_mb=memory_mb)
    if result.returncode != 0:
        raise MediaError(
            f"{Path(args[0]).name} failed (exit status {result.returncode}): {tool_message(result)}"
        )
    return result.stdout


def tool_message(result: ToolResult, max_lines: int = 3) -> str:
    """The last meaningful stderr lines of a tool run, joined into one line for an error message."""
    lines = [ln.strip() for ln in result.stderr_tail if ln.strip()]
    if not lines:
        return "no error message"
    message = " | ".join(lines[-max_lines:])
    if any(_OOM_RE.search(ln) for ln in lines):  # say which knob to turn (see DEFAULT_TOOL_MEMORY_MB)
        message += (" (the tool ran out of memory: its address space is capped by $VIDPIPE_TOOL_MEMORY_MB, default "
                    f"{DEFAULT_TOOL_MEMORY_MB} MiB; raise it if the file is genuine)")
    return message
