"""Classrooms: a teacher's class, its join code and students, the live console's events and
commands, the audit log of what teachers and admins did, and how long what was said is kept."""
