"""The files prisme_lite.py serves and reads (tracker, dashboard, schema.sql); installed as prisme_lite_static."""
