-- Band sets as first-class objects (issue #13): each stored set carries its definition
-- (lor.bands.BandSet.as_record: bands, filter curves, 5-sigma depths, error model, reference
-- band, citations) and its hash; trained artifacts carry the same record in their spec.
ALTER TABLE lor.band_sets
    ADD COLUMN reference_band text,
    ADD COLUMN definition jsonb,
    ADD COLUMN definition_sha256 text;

COMMENT ON COLUMN lor.band_sets.name IS 'Band set name, e.g. lsst or lsst-euclid.';
COMMENT ON COLUMN lor.band_sets.reference_band IS
    'Band the survey selection and the population prior refer to, e.g. i.';
COMMENT ON COLUMN lor.band_sets.definition IS
    'The band set''s record (lor.bands.BandSet.as_record): bands, filter curves, 5-sigma '
    'depths, error model, reference band, citations. NULL: an ad-hoc set from before '
    'migration 0011.';
COMMENT ON COLUMN lor.band_sets.definition_sha256 IS
    'sha256 of the definition; artifacts carry the same record in their spec.';

-- The LSST ugrizy set was named lsst_ugrizy; its definition is filled in the first time lor
-- stores or registers against it (same bands and curves), so this file freezes no depths.
UPDATE lor.band_sets SET name = 'lsst'
 WHERE name = 'lsst_ugrizy' AND NOT EXISTS (SELECT 1 FROM lor.band_sets WHERE name = 'lsst');

-- Missing and non-detection masks are int2 bit masks: at most 16 bands per set.
ALTER TABLE lor.band_sets ADD CONSTRAINT ck_band_sets_bands_fit_masks
    CHECK (cardinality(bands) BETWEEN 1 AND 16 AND cardinality(filters) = cardinality(bands));
