# Runs after boot.py on every reset. An exception ends in the REPL, and the watchdog armed by
# the node then resets the board.
import node

node.main()
