"""Hardware-in-the-loop testing: one pytest suite for virtual boards and real benches.

The pytest plugin (plugin.py) builds a bench from its options, brings each board to the state a
test asks for (strategy.py), and hands tests a board, a gateway and a bay stimulus. The layers
follow labgrid's split: targets.py knows how to power and boot one kind of board, console.py
reads and logs its serial port, strategy.py is the state machine over them, and stimulus.py
and controller.py move the simulated or the bench's car. docs/hil.md is the user's guide.
"""
