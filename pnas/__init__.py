"""The `pnas` command: the composition root. It knows the controller and the worker, and only wires."""
