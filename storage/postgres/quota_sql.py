"""The quota ledger's operations as stored functions: one round trip per reservation (migration 4).

:mod:`providers.quota_pg` calls them, each as one statement on an autocommit connection, so the
server runs the whole read-check-write of a reservation, of a send, a settle or a release in one
transaction without a network round trip while it holds a lock. They do what
:class:`providers.quota.QuotaStore` does on SQLite (the window arithmetic is
:func:`providers.ledger.earliest`'s, statement for statement), with these locks:

* ``fla_quota_lock(providers)`` — the providers' own transaction-scoped advisory locks (two-key space,
  class :data:`PROVIDER_LOCK_CLASS`, key ``hashtext(provider)``), taken in key order so two
  reservations with overlapping candidates never deadlock. Every write to a provider's slots and
  counters holds its lock: reservations for different providers run side by side, reservations
  for one provider queue in arrival order (PostgreSQL grants lock waiters first come, first served).
* Before them, the ledger's old write lock (``LOCK_KEY``) in *shared* mode: the functions do not
  block each other on it, but a process of an older version (which takes it exclusively for
  every write, reservations included) and a newer one never change the ledger at the same time.
* The periodic prune of the minute table runs in the reservation that asks for it, before its
  provider locks, under a try-lock (:data:`PRUNE_KEY`: when another process is pruning, this one
  skips it) and skipping rows another transaction has locked: it never waits for anyone.

Calendar periods are computed in Python (``zoneinfo``, as on SQLite) and passed in as a table of
(zone, kind, start, end) rows (``b_*`` arrays); when the arithmetic reaches a time outside them (a limit that
carries a wait past tomorrow or next month), ``fla_quota_reserve`` writes nothing and returns
``need_zone``/``need_t``: the caller adds that period and calls again.
"""

from __future__ import annotations

from free_llm_agent.storage import advisory_keys

PROVIDER_LOCK_CLASS = advisory_keys.PROVIDER_LOCK_CLASS
PRUNE_KEY = advisory_keys.QUOTA_PRUNE

# Migration 4 as released: never edit it (a database past version 4 would keep the old functions while new
# ones get the new); a change is a new migration with CREATE OR REPLACE FUNCTION.
MIGRATION_4_QUOTA_FUNCTIONS = """
CREATE FUNCTION fla_quota_lock(p_names TEXT[]) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    k INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1179402497);  -- LOCK_KEY (0x464C4101), shared
    IF array_length(p_names, 1) = 1 THEN
        PERFORM pg_advisory_xact_lock(1179402500, hashtext(p_names[1]));  -- PROVIDER_LOCK_CLASS (0x464C4104)
        RETURN;
    END IF;
    FOR k IN SELECT DISTINCT hashtext(n) FROM unnest(p_names) AS n ORDER BY 1 LOOP  -- in key order: no deadlock
        PERFORM pg_advisory_xact_lock(1179402500, k);
    END LOOP;
END $$;

CREATE FUNCTION fla_quota_bump(p_provider TEXT, p_day FLOAT8, p_month FLOAT8, p_requests BIGINT, p_tokens BIGINT)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    v_kind TEXT;
    v_start FLOAT8;
BEGIN
    FOREACH v_kind IN ARRAY ARRAY['day', 'month'] LOOP
        v_start := CASE v_kind WHEN 'day' THEN p_day ELSE p_month END;
        UPDATE quota_periods SET requests = requests + p_requests, tokens = tokens + p_tokens
            WHERE provider = p_provider AND period = v_kind AND start = v_start;
        IF NOT FOUND THEN  -- the period's first request
            INSERT INTO quota_periods(provider, period, start, requests, tokens)
                VALUES (p_provider, v_kind, v_start, p_requests, p_tokens)
                ON CONFLICT (provider, period, start) DO UPDATE SET
                    requests = quota_periods.requests + excluded.requests,
                    tokens = quota_periods.tokens + excluded.tokens;
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION fla_quota_reserve(
    p_names TEXT[], p_zones TEXT[], p_ests BIGINT[],
    p_rpm BIGINT[], p_tpm BIGINT[], p_rpd BIGINT[], p_tpd BIGINT[], p_rpmo BIGINT[],
    p_now FLOAT8, p_max_wait FLOAT8, p_margin FLOAT8, p_prune_horizon FLOAT8, p_prune_stale FLOAT8,
    p_now_periods FLOAT8[], b_zones TEXT[], b_kinds TEXT[], b_starts FLOAT8[], b_ends FLOAT8[],
    OUT slot_id BIGINT, OUT slot_provider TEXT, OUT slot_at FLOAT8, OUT retry_at FLOAT8,
    OUT reason_names TEXT[], OUT reason_texts TEXT[], OUT need_zone TEXT, OUT need_t FLOAT8)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
-- p_now_periods: per candidate, the start and end of the day and of the month holding p_now (4 values);
-- b_*: more periods (zone, 'day' | 'month', start, end), for times past those.
DECLARE
    v_span FLOAT8; v_rows INTEGER; v_free BOOLEAN; v_counted BOOLEAN;
    v_name TEXT; v_zone TEXT; v_est BIGINT; v_rpm BIGINT; v_tpm BIGINT;
    v_d0 FLOAT8; v_d1 FLOAT8; v_m0 FLOAT8; v_m1 FLOAT8;
    v_t FLOAT8; v_before FLOAT8; v_since FLOAT8; v_why TEXT;
    v_until FLOAT8; v_reason TEXT; v_last FLOAT8; v_ts FLOAT8;
    v_used BIGINT; v_need BIGINT; v_count BIGINT; v_tokens BIGINT; v_rlim BIGINT; v_tlim BIGINT;
    v_s FLOAT8; v_e FLOAT8; v_day FLOAT8; v_month FLOAT8;
    v_best_at FLOAT8; v_best INTEGER; v_at FLOAT8; v_kind TEXT; r RECORD;
BEGIN
    IF p_prune_horizon IS NOT NULL AND pg_try_advisory_xact_lock(1179402501) THEN  -- PRUNE_KEY (0x464C4105)
        DELETE FROM quota_slots WHERE id IN (SELECT id FROM quota_slots
            WHERE ts < p_prune_horizon AND (pending = 0 OR ts < p_prune_stale) FOR UPDATE SKIP LOCKED);
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1179402497);  -- as fla_quota_lock(p_names) does
    IF array_length(p_names, 1) = 1 THEN
        PERFORM pg_advisory_xact_lock(1179402500, hashtext(p_names[1]));
    ELSE
        PERFORM fla_quota_lock(p_names);
    END IF;
    -- The usual case first: the first candidate is free now (what the loop below finds for it when no
    -- cooldown, queued waiter, minute window, day or month holds it back).
    SELECT (c.until IS NULL OR c.until <= p_now) AND (l.ts IS NULL OR l.ts <= p_now + 0.25)  -- QUEUE_TOLERANCE
            AND (p_rpd[1] IS NULL OR p_rpd[1] > coalesce(d.requests, 0))
            AND (p_tpd[1] IS NULL OR p_tpd[1] >= least(p_ests[1], p_tpd[1]) + coalesce(d.tokens, 0))
            AND (p_rpmo[1] IS NULL OR p_rpmo[1] > coalesce(m.requests, 0)),
        d.requests IS NOT NULL AND m.requests IS NOT NULL
        INTO v_free, v_counted
        FROM (SELECT 1) AS one
        LEFT JOIN cooldowns c ON c.provider = p_names[1]
        LEFT JOIN LATERAL (SELECT s.ts FROM quota_slots s WHERE s.provider = p_names[1] ORDER BY s.ts DESC LIMIT 1) l
            ON TRUE
        LEFT JOIN quota_periods d ON d.provider = p_names[1] AND d.period = 'day' AND d.start = p_now_periods[1]
        LEFT JOIN quota_periods m ON m.provider = p_names[1] AND m.period = 'month' AND m.start = p_now_periods[3];
    IF v_free AND (p_rpm[1] IS NOT NULL OR p_tpm[1] IS NOT NULL) THEN  -- and the sliding minute
        SELECT (p_rpm[1] IS NULL OR p_rpm[1] > count(*))
                AND (p_tpm[1] IS NULL OR p_tpm[1] >= least(p_ests[1], p_tpm[1]) + coalesce(sum(s.tokens), 0))
            INTO v_free FROM quota_slots s WHERE s.provider = p_names[1] AND s.ts > p_now - (60.0 + p_margin);
    END IF;
    IF v_free AND v_counted THEN
        WITH slot AS (
            INSERT INTO quota_slots(provider, ts, tokens, day_start, month_start)
                VALUES (p_names[1], p_now, p_ests[1], p_now_periods[1], p_now_periods[3]) RETURNING id
        ), day AS (
            UPDATE quota_periods SET requests = requests + 1, tokens = tokens + p_ests[1]
                WHERE provider = p_names[1] AND period = 'day' AND start = p_now_periods[1]
        ), month AS (
            UPDATE quota_periods SET requests = requests + 1, tokens = tokens + p_ests[1]
                WHERE provider = p_names[1] AND period = 'month' AND start = p_now_periods[3]
        )
        SELECT id INTO slot_id FROM slot;
    ELSIF v_free THEN  -- the first request of a day or month
        INSERT INTO quota_slots(provider, ts, tokens, day_start, month_start)
            VALUES (p_names[1], p_now, p_ests[1], p_now_periods[1], p_now_periods[3]) RETURNING id INTO slot_id;
        PERFORM fla_quota_bump(p_names[1], p_now_periods[1], p_now_periods[3], 1, p_ests[1]);
    END IF;
    IF v_free THEN
        slot_provider := p_names[1];
        slot_at := p_now;
        RETURN;
    END IF;
    v_span := 60.0 + p_margin;
    v_rows := coalesce(array_length(b_zones, 1), 0);
    reason_names := '{}';
    reason_texts := '{}';
    FOR i IN 1 .. coalesce(array_length(p_names, 1), 0) LOOP
        v_name := p_names[i];
        v_zone := p_zones[i];
        v_est := p_ests[i];
        v_rpm := p_rpm[i];
        v_tpm := p_tpm[i];
        v_d0 := p_now_periods[4 * i - 3];
        v_d1 := p_now_periods[4 * i - 2];
        v_m0 := p_now_periods[4 * i - 1];
        v_m1 := p_now_periods[4 * i];
        v_t := p_now;
        v_why := '';
        SELECT c.until, c.reason, (SELECT max(s.ts) FROM quota_slots s WHERE s.provider = v_name)
            INTO v_until, v_reason, v_last FROM (SELECT 1) AS one LEFT JOIN cooldowns c ON c.provider = v_name;
        IF v_until > v_t THEN
            v_t := v_until;
            v_why := 'cooling down (' || v_reason || ')';
        END IF;
        IF v_last > greatest(v_t, p_now + 0.25) THEN  -- QUEUE_TOLERANCE
            v_t := v_last + 0.001;  -- EPS
            v_why := 'queued behind waiting requests';
        END IF;
        FOR v_pass IN 1 .. 12 LOOP
            v_before := v_t;
            v_since := v_t - v_span;
            IF v_rpm IS NOT NULL THEN
                IF v_rpm = 0 THEN
                    v_t := 'Infinity';
                    v_why := v_rpm || ' requests/minute used';
                ELSE
                    SELECT s.ts INTO v_ts FROM quota_slots s WHERE s.provider = v_name AND s.ts > v_since
                        ORDER BY s.ts DESC OFFSET v_rpm - 1 LIMIT 1;
                    IF FOUND THEN
                        v_t := v_ts + v_span + 0.001;
                        v_why := v_rpm || ' requests/minute used';
                    END IF;
                END IF;
            END IF;
            IF v_tpm IS NOT NULL THEN
                v_need := least(v_est, v_tpm);
                SELECT coalesce(sum(s.tokens), 0) INTO v_used FROM quota_slots s
                    WHERE s.provider = v_name AND s.ts > v_since;
                IF v_used + v_need > v_tpm THEN
                    FOR r IN SELECT s.ts, s.tokens FROM quota_slots s WHERE s.provider = v_name AND s.ts > v_since
                            ORDER BY s.ts LOOP
                        EXIT WHEN v_used + v_need <= v_tpm;
                        v_used := v_used - r.tokens;
                        v_t := greatest(v_t, r.ts + v_span + 0.001);
                        v_why := v_tpm || ' tokens/minute used';
                    END LOOP;
                END IF;
            END IF;
            EXIT WHEN v_t = 'Infinity';
            FOREACH v_kind IN ARRAY ARRAY['day', 'month'] LOOP
                IF v_kind = 'day' THEN
                    v_rlim := p_rpd[i];
                    v_tlim := p_tpd[i];
                    v_s := CASE WHEN v_d0 <= v_t AND v_t < v_d1 THEN v_d0 END;
                    v_e := v_d1;
                ELSE
                    v_rlim := p_rpmo[i];
                    v_tlim := NULL;
                    v_s := CASE WHEN v_m0 <= v_t AND v_t < v_m1 THEN v_m0 END;
                    v_e := v_m1;
                END IF;
                CONTINUE WHEN v_rlim IS NULL AND v_tlim IS NULL;
                IF v_s IS NULL THEN  -- past the period of now
                    FOR j IN 1 .. v_rows LOOP
                        IF b_zones[j] = v_zone AND b_kinds[j] = v_kind AND b_starts[j] <= v_t AND v_t < b_ends[j] THEN
                            v_s := b_starts[j];
                            v_e := b_ends[j];
                            EXIT;
                        END IF;
                    END LOOP;
                    IF v_s IS NULL THEN
                        need_zone := v_zone;
                        need_t := v_t;
                        RETURN;
                    END IF;
                END IF;
                SELECT q.requests, q.tokens INTO v_count, v_tokens FROM quota_periods q
                    WHERE q.provider = v_name AND q.period = v_kind AND q.start = v_s;
                IF NOT FOUND THEN
                    v_count := 0;
                    v_tokens := 0;
                END IF;
                IF v_rlim IS NOT NULL AND v_count >= v_rlim THEN
                    v_t := v_e;
                    v_why := v_rlim || ' requests/' || v_kind || ' used';
                ELSIF v_tlim IS NOT NULL AND v_tokens + least(v_est, v_tlim) > v_tlim THEN
                    v_t := v_e;
                    v_why := v_tlim || ' tokens/' || v_kind || ' used';
                END IF;
            END LOOP;
            EXIT WHEN v_t = v_before;
        END LOOP;
        IF v_t <= p_now THEN
            v_best := i;
            v_at := p_now;
            EXIT;
        END IF;
        reason_names := reason_names || v_name;
        reason_texts := reason_texts || v_why;
        IF v_best_at IS NULL OR v_t < v_best_at THEN
            v_best_at := v_t;
            v_best := i;
        END IF;
    END LOOP;
    IF v_at IS NULL THEN  -- nobody is free now: the earliest, if the caller waits that long
        IF v_best IS NULL THEN
            retry_at := 'Infinity';
            RETURN;
        END IF;
        IF v_best_at - p_now > (CASE WHEN p_max_wait > 0 THEN p_max_wait + p_margin ELSE 0 END) THEN
            retry_at := v_best_at;
            RETURN;
        END IF;
        v_at := v_best_at;
    END IF;
    v_name := p_names[v_best];
    v_zone := p_zones[v_best];
    IF v_at = p_now THEN  -- the day and month it is counted in
        v_day := p_now_periods[4 * v_best - 3];
        v_month := p_now_periods[4 * v_best - 1];
    ELSE
        FOR j IN 1 .. v_rows LOOP
            IF b_zones[j] = v_zone AND b_starts[j] <= v_at AND v_at < b_ends[j] THEN
                IF b_kinds[j] = 'day' THEN
                    v_day := b_starts[j];
                ELSE
                    v_month := b_starts[j];
                END IF;
            END IF;
        END LOOP;
        IF v_day IS NULL OR v_month IS NULL THEN
            need_zone := v_zone;
            need_t := v_at;
            reason_names := NULL;
            reason_texts := NULL;
            RETURN;
        END IF;
    END IF;
    INSERT INTO quota_slots(provider, ts, tokens, day_start, month_start)
        VALUES (v_name, v_at, p_ests[v_best], v_day, v_month) RETURNING id INTO slot_id;
    UPDATE quota_periods SET requests = requests + 1, tokens = tokens + p_ests[v_best]
        WHERE provider = v_name AND period = 'day' AND start = v_day;
    IF NOT FOUND THEN
        PERFORM fla_quota_bump(v_name, v_day, v_month, 1, p_ests[v_best]);  -- a new day: maybe a new month
    ELSE
        UPDATE quota_periods SET requests = requests + 1, tokens = tokens + p_ests[v_best]
            WHERE provider = v_name AND period = 'month' AND start = v_month;
        IF NOT FOUND THEN
            INSERT INTO quota_periods(provider, period, start, requests, tokens)
                VALUES (v_name, 'month', v_month, 1, p_ests[v_best]);
        END IF;
    END IF;
    slot_provider := v_name;
    slot_at := v_at;
END $$;

CREATE FUNCTION fla_quota_sent(
    p_id BIGINT, p_provider TEXT, p_now FLOAT8, p_margin FLOAT8,
    p_rpm BIGINT, p_tpm BIGINT, p_rpd BIGINT, p_tpd BIGINT, p_rpmo BIGINT, p_day FLOAT8, p_month FLOAT8)
RETURNS TEXT LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_tokens BIGINT; v_day FLOAT8; v_month FLOAT8; v_count BIGINT; v_used BIGINT;
    v_fits BOOLEAN := TRUE; v_kind TEXT; v_start FLOAT8; v_booked FLOAT8; v_rlim BIGINT; v_tlim BIGINT;
BEGIN
    PERFORM fla_quota_lock(ARRAY[p_provider]);
    SELECT s.tokens, s.day_start, s.month_start INTO v_tokens, v_day, v_month FROM quota_slots s WHERE s.id = p_id;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    -- may it leave now: the other requests of the sliding minute up to now, and of the day and month now
    -- falls in (waiters booked for them included), leave room for it
    SELECT count(*), coalesce(sum(s.tokens), 0) INTO v_count, v_used FROM quota_slots s
        WHERE s.provider = p_provider AND s.id <> p_id AND s.ts > p_now - 60.0 - p_margin AND s.ts <= p_now;
    IF p_rpm IS NOT NULL AND v_count >= p_rpm THEN
        v_fits := FALSE;
    ELSIF p_tpm IS NOT NULL AND v_used + least(v_tokens, p_tpm) > p_tpm THEN
        v_fits := FALSE;
    END IF;
    IF v_fits THEN
        FOREACH v_kind IN ARRAY ARRAY['day', 'month'] LOOP
            v_start := CASE v_kind WHEN 'day' THEN p_day ELSE p_month END;
            v_booked := CASE v_kind WHEN 'day' THEN v_day ELSE v_month END;
            v_rlim := CASE v_kind WHEN 'day' THEN p_rpd ELSE p_rpmo END;
            v_tlim := CASE v_kind WHEN 'day' THEN p_tpd END;
            SELECT q.requests, q.tokens INTO v_count, v_used FROM quota_periods q
                WHERE q.provider = p_provider AND q.period = v_kind AND q.start = v_start;
            IF NOT FOUND THEN
                v_count := 0;
                v_used := 0;
            END IF;
            IF v_booked = v_start THEN  -- counted there already: not another request
                v_count := v_count - 1;
                v_used := v_used - v_tokens;
            END IF;
            IF (v_rlim IS NOT NULL AND v_count >= v_rlim)
                    OR (v_tlim IS NOT NULL AND v_used + least(v_tokens, v_tlim) > v_tlim) THEN
                v_fits := FALSE;
                EXIT;
            END IF;
        END LOOP;
    END IF;
    IF NOT v_fits THEN
        IF v_day IS NOT NULL THEN
            PERFORM fla_quota_bump(p_provider, v_day, v_month, -1, -v_tokens);
        END IF;
        DELETE FROM quota_slots WHERE id = p_id;
        RETURN 'refused';
    END IF;
    IF v_day IS NOT NULL AND (v_day <> p_day OR v_month <> p_month) THEN  -- sent on another day than booked for
        PERFORM fla_quota_bump(p_provider, v_day, v_month, -1, -v_tokens);
        PERFORM fla_quota_bump(p_provider, p_day, p_month, 1, v_tokens);
    END IF;
    UPDATE quota_slots SET ts = p_now,
        day_start = CASE WHEN v_day IS NULL THEN NULL ELSE p_day END,
        month_start = CASE WHEN v_day IS NULL THEN NULL ELSE p_month END
        WHERE id = p_id;
    RETURN 'sent';
END $$;

CREATE FUNCTION fla_quota_settle(p_id BIGINT, p_provider TEXT, p_tokens BIGINT, p_ok BOOLEAN)
RETURNS VOID LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_tokens BIGINT; v_day FLOAT8; v_month FLOAT8;
BEGIN
    PERFORM fla_quota_lock(ARRAY[p_provider]);
    SELECT s.tokens, s.day_start, s.month_start INTO v_tokens, v_day, v_month FROM quota_slots s WHERE s.id = p_id;
    IF FOUND THEN
        IF v_day IS NOT NULL THEN
            PERFORM fla_quota_bump(p_provider, v_day, v_month, 0, p_tokens - v_tokens);
        END IF;
        UPDATE quota_slots SET tokens = p_tokens, pending = 0 WHERE id = p_id;
    END IF;
    IF p_ok THEN
        UPDATE cooldowns SET failures = 0 WHERE provider = p_provider;
    END IF;
END $$;

CREATE FUNCTION fla_quota_release(p_id BIGINT, p_provider TEXT)
RETURNS VOID LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_tokens BIGINT; v_day FLOAT8; v_month FLOAT8;
BEGIN
    PERFORM fla_quota_lock(ARRAY[p_provider]);
    SELECT s.tokens, s.day_start, s.month_start INTO v_tokens, v_day, v_month FROM quota_slots s WHERE s.id = p_id;
    IF FOUND THEN
        IF v_day IS NOT NULL THEN
            PERFORM fla_quota_bump(p_provider, v_day, v_month, -1, -v_tokens);
        END IF;
        DELETE FROM quota_slots WHERE id = p_id;
    END IF;
END $$;
"""
