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
