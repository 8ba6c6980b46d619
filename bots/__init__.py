"""Teams turn handling: the HTTP endpoint, authentication, the router from command words, invoke
names and card verbs to handlers. With app.py, the only place that knows Bot Framework types."""
