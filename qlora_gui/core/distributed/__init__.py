"""Data-parallel training on several machines (or several processes of one) over MLX's own distributed layer.

hostfile.py (mlx.launch's hostfile: who the ranks are), probe.py (what a host reports: its Python environment
and the content hashes of the model and data), checks.py (the check before any weights load), share.py (copying
model and data to the hosts), launch.py (the mlx.launch command), supervisor.py (a run under mlx.launch: its
events, controls and faults), faults.py (which rank ended a run, and how), event_lines.py (events as JSON lines
and back), agreement.py (what the ranks of a running trainer agree on: stop, pause, the run's facts, throughput,
validation sums), collective.py (a step's gradients summed across ranks in few collectives).
"""
