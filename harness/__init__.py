"""harness: replay recorded calls against any Twilio Media Streams handler; check, measure, report."""
