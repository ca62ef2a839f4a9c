"""Notifications (issue 15): what the portal tells people in the portal and by mail, as
each chose in their profile, sent as jobs, once each."""
