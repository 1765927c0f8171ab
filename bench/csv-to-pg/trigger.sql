-- A trigger on the csv-to-pg target that refuses some rows (classes.py's
-- trigger class): with a trigger, the writer holds no row back, so every
-- server-side refusal is found by isolating the COPY that failed.
CREATE OR REPLACE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name = 'refused by trigger' THEN
        RAISE EXCEPTION 'row % refused by trigger', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION refuse_marked();
