"""Target datasets. Each module registers namespaces of ``TARGETS`` (``sklearn/digits``, ``conll/…``)."""
