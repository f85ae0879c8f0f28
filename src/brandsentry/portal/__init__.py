"""The brand portal: web pages and a JSON API over the catalog for brand representatives and admins."""
