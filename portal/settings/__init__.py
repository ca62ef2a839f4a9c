"""Council-wide settings (tax default, idle-seat threshold, invoice prefix, bank details)."""
