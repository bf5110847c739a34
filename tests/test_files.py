"""koe5.files: atomic writes that honour the umask, one writer at a time, leftovers of killed writers."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from koe5.files import atomic_dir, atomic_write_bytes, leftovers, remove_leftovers, sha256_file, writer_lock


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    """Files were created 0600 whatever the umask (mkstemp's mode), unreadable to a user's group."""
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "v.npy", b"data")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "x").write_bytes(b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "v.npy").stat().st_mode & 0o777 == mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "v.npy").read_bytes() == b"data"


def test_a_failed_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out"):
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_writer_are_found_and_removed(tmp_path):
    dst = tmp_path / "model"
    code = textwrap.dedent(
        f"""
        import os
        from koe5.files import atomic_dir
        with atomic_dir({str(dst)!r}) as tmp:
            (tmp / "weights").write_bytes(b"x" * 1000)
            os.kill(os.getpid(), 9)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    found = leftovers(dst)
    assert len(found) == 1 and found[0].name.startswith(".model.tmp-") and not dst.exists()
    (tmp_path / "other").mkdir()  # not a leftover of dst
    assert remove_leftovers(dst) == found
    assert leftovers(dst) == [] and (tmp_path / "other").is_dir()


def test_writer_lock_serialises_processes(tmp_path):
    dst = tmp_path / "model"
    hold = textwrap.dedent(
        f"""
        import sys, time
        from koe5.files import writer_lock
        with writer_lock({str(dst)!r}):
            print("held", flush=True)
            time.sleep(1.5)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with writer_lock(dst):
        waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert waited > 0.5, "the second writer waited for the first"


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
