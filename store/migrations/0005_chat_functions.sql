-- Sending a chat message in one round trip: chat_send() does in one call (one
-- implicit transaction) what store/conversations.py used to do in a
-- transaction of several statements, with the same guarantees:
--   * the conversation row is locked first (FOR UPDATE), so sends in one
--     conversation queue up, message ids commit in increasing order within it
--     and last_message_id points at the newest; an unmatch that closes it
--     waits for (or is waited on by) a send;
--   * one message per (sender, client_id): a retry gets the first copy
--     ('duplicate'), the same client_id in another conversation is
--     'client_id_reused';
--   * the two members' event counters are bumped in user-id order (user_a <
--     user_b by the table's CHECK), holding their row locks until COMMIT, so
--     event ids stay gap-free per user and a failed send gives its ids back.
-- Each statement of a VOLATILE PL/pgSQL function takes a fresh snapshot, so
-- the client_id look-up after waiting for the row lock sees a retry that
-- committed meanwhile, exactly as the separate statements did.

-- How Python writes a timestamp in JSON (store/events.py _iso): UTC, 'Z',
-- microseconds only when there are any.
CREATE FUNCTION chat_iso_utc(t TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN date_part('microseconds', t)::bigint % 1000000 = 0
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
$$;

CREATE FUNCTION chat_send(
    p_conversation UUID, p_sender UUID, p_client_id TEXT, p_text TEXT,
    OUT status TEXT,
    OUT message_id BIGINT,
    OUT message_text TEXT,
    OUT message_created_at TIMESTAMPTZ,
    OUT member_a UUID,
    OUT member_b UUID,
    OUT event_id_a BIGINT,
    OUT event_id_b BIGINT,
    OUT event_created_at_a TIMESTAMPTZ,
    OUT event_created_at_b TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_closed_at TIMESTAMPTZ;
    v_first_conversation UUID;
    v_payload JSONB;
BEGIN
    SELECT c.user_a, c.user_b, c.closed_at INTO member_a, member_b, v_closed_at
    FROM conversations c
    WHERE c.id = p_conversation AND p_sender IN (c.user_a, c.user_b)
    FOR UPDATE;
    IF NOT FOUND THEN
        status := 'not_found';
        RETURN;
    END IF;

    SELECT m.id, m.conversation_id, m.text, m.created_at
    INTO message_id, v_first_conversation, message_text, message_created_at
    FROM messages m WHERE m.sender = p_sender AND m.client_id = p_client_id;
    IF FOUND THEN
        IF v_first_conversation <> p_conversation THEN
            status := 'client_id_reused';
            message_id := NULL; message_text := NULL; message_created_at := NULL;
        ELSE
            status := 'duplicate';
        END IF;
        RETURN;
    END IF;

    IF v_closed_at IS NOT NULL THEN
        status := 'closed';
        RETURN;
    END IF;

    INSERT INTO messages AS m (conversation_id, sender, client_id, text)
    VALUES (p_conversation, p_sender, p_client_id, p_text)
    ON CONFLICT (sender, client_id) DO NOTHING
    RETURNING m.id, m.text, m.created_at INTO message_id, message_text, message_created_at;
    IF NOT FOUND THEN
        -- The same client_id, sent at this instant to another conversation.
        status := 'client_id_reused';
        RETURN;
    END IF;

    UPDATE conversations c SET last_message_id = message_id, last_activity_at = message_created_at
    WHERE c.id = p_conversation;

    -- The payload of both 'message' events, as message_payload() shapes it.
    v_payload := jsonb_build_object(
        'conversation_id', p_conversation::text,
        'message', jsonb_build_object(
            'id', message_id,
            'conversation_id', p_conversation::text,
            'sender_id', p_sender::text,
            'client_id', p_client_id,
            'text', p_text,
            'created_at', chat_iso_utc(message_created_at)));

    WITH counter AS (
        INSERT INTO user_event_counters AS k (user_id, last_event_id) VALUES (member_a, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = k.last_event_id + 1
        RETURNING k.last_event_id
    )
    INSERT INTO user_events AS e (user_id, event_id, type, payload)
    SELECT member_a, counter.last_event_id, 'message', v_payload FROM counter
    RETURNING e.event_id, e.created_at INTO event_id_a, event_created_at_a;

    WITH counter AS (
        INSERT INTO user_event_counters AS k (user_id, last_event_id) VALUES (member_b, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = k.last_event_id + 1
        RETURNING k.last_event_id
    )
    INSERT INTO user_events AS e (user_id, event_id, type, payload)
    SELECT member_b, counter.last_event_id, 'message', v_payload FROM counter
    RETURNING e.event_id, e.created_at INTO event_id_b, event_created_at_b;

    status := 'created';
END
$$;

-- Group commit: several sends (item i = the i-th element of each array) in
-- one call and one transaction, each item answered as chat_send answers it,
-- in item order. Locks are taken in one global order, so batches running at
-- once on several connections (and unmatches) never wait in a cycle: first
-- every conversation of the batch in id order, then every member's event
-- counter in user-id order, each counter bumped once by the number of events
-- the batch gives that user. Messages are inserted in item order, so ids
-- still commit in increasing order per conversation; two items with the same
-- sender and client_id give one message (the later item is a 'duplicate').
CREATE FUNCTION chat_send_batch(
    p_conversations UUID[], p_senders UUID[], p_client_ids TEXT[], p_texts TEXT[]
) RETURNS TABLE (
    item INT,
    status TEXT,
    message_id BIGINT,
    message_text TEXT,
    message_created_at TIMESTAMPTZ,
    member_a UUID,
    member_b UUID,
    event_id_a BIGINT,
    event_id_b BIGINT,
    event_created_at_a TIMESTAMPTZ,
    event_created_at_b TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    n INT := coalesce(array_length(p_conversations, 1), 0);
    r_status TEXT[] := '{}';
    r_id BIGINT[] := '{}';
    r_text TEXT[] := '{}';
    r_at TIMESTAMPTZ[] := '{}';
    r_a UUID[] := '{}';
    r_b UUID[] := '{}';
    r_ev_a BIGINT[] := '{}';
    r_ev_b BIGINT[] := '{}';
    v_a UUID;
    v_b UUID;
    v_closed_at TIMESTAMPTZ;
    v_first_conversation UUID;
    v_id BIGINT;
    v_text TEXT;
    v_at TIMESTAMPTZ;
    v_users UUID[];
    v_next BIGINT[];
    v_pos INT;
    e_user UUID[] := '{}';
    e_id BIGINT[] := '{}';
    e_payload JSONB[] := '{}';
    v_payload JSONB;
BEGIN
    PERFORM 1 FROM conversations c WHERE c.id = ANY (p_conversations) ORDER BY c.id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        v_id := NULL; v_text := NULL; v_at := NULL;
        SELECT c.user_a, c.user_b, c.closed_at INTO v_a, v_b, v_closed_at
        FROM conversations c WHERE c.id = p_conversations[i] AND p_senders[i] IN (c.user_a, c.user_b);
        IF NOT FOUND THEN
            r_status[i] := 'not_found';
            CONTINUE;
        END IF;
        r_a[i] := v_a;
        r_b[i] := v_b;
        SELECT m.id, m.conversation_id, m.text, m.created_at INTO v_id, v_first_conversation, v_text, v_at
        FROM messages m WHERE m.sender = p_senders[i] AND m.client_id = p_client_ids[i];
        IF FOUND THEN
            IF v_first_conversation <> p_conversations[i] THEN
                r_status[i] := 'client_id_reused';
            ELSE
                r_status[i] := 'duplicate';
                r_id[i] := v_id; r_text[i] := v_text; r_at[i] := v_at;
            END IF;
            CONTINUE;
        END IF;
        IF v_closed_at IS NOT NULL THEN
            r_status[i] := 'closed';
            CONTINUE;
        END IF;
        INSERT INTO messages AS m (conversation_id, sender, client_id, text)
        VALUES (p_conversations[i], p_senders[i], p_client_ids[i], p_texts[i])
        ON CONFLICT (sender, client_id) DO NOTHING
        RETURNING m.id, m.text, m.created_at INTO v_id, v_text, v_at;
        IF NOT FOUND THEN
            r_status[i] := 'client_id_reused';
            CONTINUE;
        END IF;
        UPDATE conversations c SET last_message_id = v_id, last_activity_at = v_at WHERE c.id = p_conversations[i];
        r_status[i] := 'created';
        r_id[i] := v_id; r_text[i] := v_text; r_at[i] := v_at;
    END LOOP;

    -- Each member's counter, bumped once by its number of new events, in user-id order.
    WITH need AS (
        SELECT u, count(*) AS k
        FROM generate_subscripts(p_conversations, 1) AS g(i), unnest(ARRAY[r_a[g.i], r_b[g.i]]) AS u
        WHERE r_status[g.i] = 'created'
        GROUP BY u
    ), bumped AS (
        INSERT INTO user_event_counters AS ctr (user_id, last_event_id)
        SELECT need.u, need.k FROM need ORDER BY need.u
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = ctr.last_event_id + excluded.last_event_id
        RETURNING ctr.user_id, ctr.last_event_id
    )
    SELECT array_agg(b.user_id), array_agg(b.last_event_id - need.k + 1) INTO v_users, v_next
    FROM bumped b JOIN need ON need.u = b.user_id;

    FOR i IN 1 .. n LOOP
        IF r_status[i] = 'created' THEN
            v_payload := jsonb_build_object(
                'conversation_id', p_conversations[i]::text,
                'message', jsonb_build_object(
                    'id', r_id[i],
                    'conversation_id', p_conversations[i]::text,
                    'sender_id', p_senders[i]::text,
                    'client_id', p_client_ids[i],
                    'text', r_text[i],
                    'created_at', chat_iso_utc(r_at[i])));
            v_pos := array_position(v_users, r_a[i]);
            r_ev_a[i] := v_next[v_pos];
            v_next[v_pos] := v_next[v_pos] + 1;
            v_pos := array_position(v_users, r_b[i]);
            r_ev_b[i] := v_next[v_pos];
            v_next[v_pos] := v_next[v_pos] + 1;
            e_user := array_cat(e_user, ARRAY[r_a[i], r_b[i]]);
            e_id := array_cat(e_id, ARRAY[r_ev_a[i], r_ev_b[i]]);
            e_payload := array_cat(e_payload, ARRAY[v_payload, v_payload]);
        END IF;
    END LOOP;

    INSERT INTO user_events (user_id, event_id, type, payload)
    SELECT u, e, 'message', p FROM unnest(e_user, e_id, e_payload) AS x(u, e, p);

    RETURN QUERY
    SELECT g.i, r_status[g.i], r_id[g.i], r_text[g.i], r_at[g.i], r_a[g.i], r_b[g.i], r_ev_a[g.i], r_ev_b[g.i],
           CASE WHEN r_status[g.i] = 'created' THEN now() END, CASE WHEN r_status[g.i] = 'created' THEN now() END
    FROM generate_subscripts(p_conversations, 1) AS g(i) ORDER BY g.i;
END
$$;

-- A read mark in one round trip: move the reader's mark forward to p_up_to
-- (a message of this conversation; a mark never moves back) and append a
-- 'read' event to the other member's log, in one implicit transaction.
-- status: 'not_found' (no such conversation, or not a member),
-- 'no_such_message', or 'marked' (event_id is NULL when the mark did not move).
CREATE FUNCTION chat_mark_read(
    p_conversation UUID, p_reader UUID, p_up_to BIGINT,
    OUT status TEXT,
    OUT last_read BIGINT,
    OUT other_member UUID,
    OUT event_id BIGINT,
    OUT event_created_at TIMESTAMPTZ
) LANGUAGE plpgsql AS $$
DECLARE
    v_a UUID;
    v_b UUID;
BEGIN
    SELECT c.user_a, c.user_b INTO v_a, v_b
    FROM conversations c WHERE c.id = p_conversation AND p_reader IN (c.user_a, c.user_b);
    IF NOT FOUND THEN
        status := 'not_found';
        RETURN;
    END IF;
    PERFORM 1 FROM messages m WHERE m.id = p_up_to AND m.conversation_id = p_conversation;
    IF NOT FOUND THEN
        status := 'no_such_message';
        RETURN;
    END IF;
    status := 'marked';
    UPDATE conversation_members cm SET last_read_message_id = p_up_to
    WHERE cm.conversation_id = p_conversation AND cm.user_id = p_reader AND cm.last_read_message_id < p_up_to
    RETURNING cm.last_read_message_id INTO last_read;
    IF NOT FOUND THEN
        SELECT cm.last_read_message_id INTO last_read
        FROM conversation_members cm WHERE cm.conversation_id = p_conversation AND cm.user_id = p_reader;
        RETURN;
    END IF;
    other_member := CASE WHEN v_a = p_reader THEN v_b ELSE v_a END;
    WITH counter AS (
        INSERT INTO user_event_counters AS k (user_id, last_event_id) VALUES (other_member, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = k.last_event_id + 1
        RETURNING k.last_event_id
    )
    INSERT INTO user_events AS e (user_id, event_id, type, payload)
    SELECT other_member, counter.last_event_id, 'read', jsonb_build_object(
        'conversation_id', p_conversation::text,
        'reader_id', p_reader::text,
        'last_read_message_id', p_up_to)
    FROM counter
    RETURNING e.event_id, e.created_at INTO event_id, event_created_at;
END
$$;
