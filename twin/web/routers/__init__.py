"""One router per resource; each is mounted behind the owner check by `twin.web.app`."""
