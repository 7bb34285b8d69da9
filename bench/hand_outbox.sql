-- bench/'s baseline for async delivery: the outbox a team would build by hand
-- (one PL/pgSQL trigger inserting the row's key and image into an outbox
-- table; nothing drains it).  Used by bench.pl (section 1) and
-- bench/async_cost.sh; each creates the trigger on its own table, with the
-- table's key prefix as the argument:
--   CREATE TRIGGER hand_outbox_capture AFTER INSERT OR UPDATE OR DELETE ON t
--       FOR EACH ROW EXECUTE FUNCTION hand_outbox_capture('t:');
DROP TABLE IF EXISTS hand_outbox;
CREATE TABLE hand_outbox (id bigserial PRIMARY KEY, tbl text NOT NULL, redis_key text NOT NULL,
                          op "char" NOT NULL, payload jsonb, created_at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION hand_outbox_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO hand_outbox (tbl, redis_key, op) VALUES (TG_TABLE_NAME, TG_ARGV[0] || OLD.id, 'D');
        RETURN OLD;
    END IF;
    INSERT INTO hand_outbox (tbl, redis_key, op, payload)
        VALUES (TG_TABLE_NAME, TG_ARGV[0] || NEW.id, 'U', to_jsonb(NEW));
    RETURN NEW;
END $$;
