"""The ground floor: what every other part of the project uses, importing no other part of it.

``config`` (the project's folders, the configs' resolvers, composing a config), ``settings`` (config values checked
before any work), ``errors`` (what a user's mistake raises), ``entry_point`` (how every command runs and shows such a
mistake), ``runs`` (run folders: finding them, their checkpoints and records), ``storage`` (the disk under them: a folder
that cannot be written, a full disk, files replaced whole), ``plots`` (matplotlib figures) and
``silenced_warnings``.
"""
