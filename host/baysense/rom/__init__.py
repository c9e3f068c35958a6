"""The ESP32 serial bootloader (ROM loader and esptool's flasher stub) of the virtual board.

esptool talks to it over `socket://` or `rfc2217://` exactly as to a chip in download mode:
`server.serve()` runs it, `boot.probe_image()` and `boot.rom_boot_log()` tell the virtual board
what a chip would do on reset.
"""
