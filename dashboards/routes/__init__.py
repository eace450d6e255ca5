"""One router per resource: studies, trials, devices, exports (API) and the HTML pages."""
