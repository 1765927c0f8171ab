-- A trigger on the csv-to-mysql target that refuses some rows (classes.py's
-- trigger class), as bench/csv-to-pg/trigger.sql does on PostgreSQL.
DELIMITER //
CREATE TRIGGER refuse BEFORE INSERT ON accounts FOR EACH ROW
BEGIN
    IF NEW.name = 'refused by trigger' THEN
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by trigger';
    END IF;
END//
DELIMITER ;
