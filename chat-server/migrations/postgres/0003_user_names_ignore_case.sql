-- User names are unique whatever their case: `ALICE` cannot be registered beside `alice`.
-- (A database that already holds two such names stops here; rename one, then start again.)
CREATE UNIQUE INDEX users_name_lower ON users (lower(name));
