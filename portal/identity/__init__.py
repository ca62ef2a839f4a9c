"""Identity: accounts, roles, sign-in sessions, invitations and password resets."""
