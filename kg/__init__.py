"""The knowledge store: facts, stores (embedded, Neo4j), RDF view + SPARQL, analytic snapshot."""
