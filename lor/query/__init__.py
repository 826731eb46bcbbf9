"""Science queries over stored posteriors: n(z) of selections and tomographic bins, cone
search and cross-match (SQL in ``lor/db/sql/0005_nz_sky.sql``, called through
:mod:`lor.db.selection_store`)."""
