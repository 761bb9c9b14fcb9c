"""The backends that run an export's graphs, one module each (``base.REGISTRY`` names them);
``runtime.engine`` chooses among them."""
