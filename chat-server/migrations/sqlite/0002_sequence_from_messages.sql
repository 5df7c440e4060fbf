-- A room's sequence is computed from its messages (MAX(seq) over the primary key)
-- in the INSERT itself; the separate counter table is no longer used.
DROP TABLE rooms;
