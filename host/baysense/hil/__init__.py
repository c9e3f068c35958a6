"""Hardware-in-the-loop testing: one pytest suite for virtual boards and real benches.

The pytest plugin (plugin.py) builds a bench from its options, brings each board to the state a
test requests (strategy.py), and hands tests a board, a gateway and a bay stimulus. The layers
follow labgrid's split. targets.py powers and boots one kind of board, console.py reads and
logs its serial port, and strategy.py is the state machine over them. stimulus.py and
controller.py move the simulated car or the bench's car. docs/hil.md is the user's guide.
"""
