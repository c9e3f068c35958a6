# Start-up of the virtual board's interpreter: confine files to the board's folder, then run
# boot.py and (in a normal boot) main.py from it, as the esp32 port does. The supervisor runs
# this file with `micropython -i`, so the friendly REPL follows.


def _start():
    import builtins
    import sys
    import os
    import _sim

    real_open = builtins.open

    def board_open(path, *args, **kwargs):
        if isinstance(path, str):
            path = os.board_path(path)
        return real_open(path, *args, **kwargs)

    builtins.open = board_open
    os.chdir("/")
    hal_dir = sys.path[0]
    sys.path[:] = ["", hal_dir, _sim.FS_ROOT + "/lib"]

    # While this marker exists the supervisor may interrupt with SIGINT: the port handles it
    # while it runs code, not at a prompt.
    marker = _sim.SIM_DIR + "/running_scripts"
    with _sim.host_open(marker, "w"):
        pass

    scripts = ["boot.py"]
    if _sim.real_os().getenv("BAYSENSE_RUN_MAIN") == "1":
        scripts.append("main.py")
    try:
        for script in scripts:
            try:
                os.stat(script)
            except OSError:
                continue
            try:
                with real_open(os.board_path(script)) as f:
                    source = f.read()
                exec(compile(source, script, "exec"), {"__name__": "__main__"})
            except KeyboardInterrupt:
                raise
            except SystemExit:
                raise
            except BaseException as error:  # noqa: B902 - the board prints any error and goes on
                sys.print_exception(error)
    finally:
        _sim.real_os().remove(marker)


_start()
del _start
