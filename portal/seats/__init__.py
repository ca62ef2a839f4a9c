"""Seats: members' subscriptions to pooled products, seat assignments and seat requests."""
