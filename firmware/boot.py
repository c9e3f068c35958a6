# Runs first on every reset, before main.py (and alone after a soft reset in the raw REPL).
import micropython

# Room for the traceback of an exception raised inside an IRQ handler, where the heap may be
# locked. The unix port (virtual board) has no such call.
if hasattr(micropython, "alloc_emergency_exception_buf"):
    micropython.alloc_emergency_exception_buf(100)
