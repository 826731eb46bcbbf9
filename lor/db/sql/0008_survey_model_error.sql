-- Survey-wide model-error terms of a calibration version (issue #12): per band, the SED
-- model's offset common to every tract and the fractional error floor every likelihood
-- adds to the catalog errors (lor.inference.model_error). Per-tract zeropoints stay in
-- lor.calibration_terms, as totals (survey offset + the tract's deviation).
CREATE TABLE lor.calibration_survey_terms (
    calibration_version_id integer NOT NULL
        REFERENCES lor.calibration_versions (id) ON DELETE CASCADE,
    band text NOT NULL,
    sed_offset_mag real NOT NULL,
    sed_offset_err real,
    error_floor_mag real NOT NULL CHECK (error_floor_mag >= 0),
    error_floor_err real,
    CONSTRAINT pk_calibration_survey_terms PRIMARY KEY (calibration_version_id, band)
);
COMMENT ON TABLE lor.calibration_survey_terms IS
    'Survey-wide, per-band model error of a calibration version: SED offset and error floor.';
COMMENT ON COLUMN lor.calibration_survey_terms.calibration_version_id IS 'Calibration version.';
COMMENT ON COLUMN lor.calibration_survey_terms.band IS 'Short band name.';
COMMENT ON COLUMN lor.calibration_survey_terms.sed_offset_mag IS
    'Offset common to every tract (SED-model error), mag; included in the tracts'' totals.';
COMMENT ON COLUMN lor.calibration_survey_terms.sed_offset_err IS '1-sigma uncertainty, mag.';
COMMENT ON COLUMN lor.calibration_survey_terms.error_floor_mag IS
    'Fractional model-error floor (mag) added in quadrature to every flux error.';
COMMENT ON COLUMN lor.calibration_survey_terms.error_floor_err IS '1-sigma uncertainty, mag.';
GRANT SELECT ON lor.calibration_survey_terms TO lor_reader, lor_worker;
