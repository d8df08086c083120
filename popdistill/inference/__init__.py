"""Masks over a whole data set on Ray Data, resumably: the generic streaming (``stream.py``:
read tasks cut videos into chunks, ``chunks.py``; an actor pool masks them and writes the
Parquet store, ``sink.py``) that the VideoPCA teacher (:mod:`popdistill.teacher.pipeline`) and
the trained students (``predict.py``: a checkpoint, or a whole population in one pass) share.
"""
