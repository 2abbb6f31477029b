"""The sweep report: ``python -m src.report <multirun folder | outputs/>`` (see __main__.py): the runs read
(reading), their tables (tables) and pictures (charts), written together (sweep)."""
