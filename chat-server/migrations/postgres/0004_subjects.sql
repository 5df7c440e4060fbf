-- Users of the app's backend (tokens signed with JWT_PUBLIC_KEY / JWT_JWKS_FILE): each
-- `sub` gets a number once; a connection acts as minus that number, so it never meets
-- an account's (positive) id in messages.user_id.
CREATE TABLE subjects (
    id BIGSERIAL PRIMARY KEY,
    subject TEXT NOT NULL UNIQUE
);
