"""Draw a digit, watch LeNet-5 read it: ``python -m src.demo [ckpt_path=<checkpoint>] [host=127.0.0.1] [port=8000]``.

src/demo/__main__.py is the command (the settings, the checkpoint served, the server on its socket);
src/demo/server.py is the HTTP side (the page in src/demo/static/, the JSON API of docs/demo.md);
src/demo/readout.py runs the network. It serves one checkpoint: the one given, else the newest completed training
run's best checkpoint under outputs/, else one trained first (the default recipe, one epoch). Everything is checked
before the server starts: the config values, then the checkpoint (refused exactly as ``src.predict`` refuses it).
"""
