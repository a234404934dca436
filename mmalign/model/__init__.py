"""LoginMEA model parts: sparse ops, encoders, fusion, relational reflection attention, loss."""
