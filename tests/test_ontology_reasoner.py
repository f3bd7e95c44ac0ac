"""The CNC ontology is consistent OWL 2 DL, follows the schema conventions, and its shapes work.

- HermiT (through owlready2, Java 17) finds ``ontology/cnc.ttl`` consistent with no
  unsatisfiable class, and finds an individual that breaks a disjointness axiom;
- the OWL API's OWL 2 DL profile checker (bundled in owlready2's HermiT.jar) reports no
  violation (punning, undeclared terms, non-simple properties in restrictions ...);
- every cnc: term follows the conventions the store derives its schema from (labels,
  comments, one allowed range per datatype property, domain and range per object
  property, lowerCamelCase names that are not store column names);
- ``ontology/shapes.ttl`` uses only the SHACL subset the write path compiles, agrees with
  the ontology, and pySHACL accepts conforming data and reports the expected violations.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import rdflib
from rdflib import Literal, URIRef
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS, SKOS

ONTOLOGY_DIR = Path(__file__).resolve().parents[1] / "ontology"
CNC_TTL = ONTOLOGY_DIR / "cnc.ttl"
SHAPES_TTL = ONTOLOGY_DIR / "shapes.ttl"

CNC = rdflib.Namespace("https://w3id.org/autocnc/ontology#")
# A plain Namespace: rdflib's closed XSD namespace warns when pytest probes it.
XSD = rdflib.Namespace("http://www.w3.org/2001/XMLSchema#")
CATSM = "https://w3id.org/autocnc/cats-metrics#"
SH = rdflib.Namespace("http://www.w3.org/ns/shacl#")
ONTOLOGY_IRI = URIRef("https://w3id.org/autocnc/ontology")

ALLOWED_RANGES = {XSD.string, XSD.integer, XSD.double, XSD.boolean, XSD.dateTime}
RESERVED_NAMES = {"iri", "kind", "types", "source", "validFrom", "validTo", "firstSeen",
                  "lastSeen", "scope", "key", "type", "seq", "hash", "labelPairs"}
FACT_METADATA = {"source": XSD.string, "validFrom": XSD.dateTime, "validTo": XSD.dateTime,
                 "firstSeen": XSD.dateTime, "lastSeen": XSD.dateTime}
LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
UPPER_CAMEL = re.compile(r"^[A-Z][a-zA-Z0-9]*$")

# The vocabulary other modules rely on, by local name.
REQUIRED_SUBCLASSES = {  # class -> an ancestor it must have
    "Resource": "Entity", "ComputeSite": "Resource", "CloudDataCentre": "ComputeSite",
    "EdgeSite": "ComputeSite", "EndDevice": "ComputeSite", "ComputeNode": "Resource",
    "Accelerator": "Resource", "GPU": "Accelerator", "NPU": "Accelerator",
    "NetworkNode": "Resource", "Router": "NetworkNode", "Switch": "NetworkNode",
    "NetworkInterface": "Resource", "NetworkLink": "Resource", "Network": "Resource",
    "KubernetesCluster": "Resource", "KubernetesNode": "Resource", "Namespace": "Resource",
    "Workload": "Resource", "Deployment": "Workload", "StatefulSet": "Workload",
    "DaemonSet": "Workload", "Pod": "Resource", "Container": "Resource",
    "KubernetesService": "Resource", "Ingress": "Resource", "Application": "Resource",
    "Service": "Resource", "Endpoint": "Resource", "MetricSeries": "Entity",
    "Event": "Entity", "Anomaly": "Event", "LogEvent": "Event", "Alert": "Event",
    "Alarm": "Event", "LogTemplate": "Entity", "AlertDefinition": "Entity",
    "Incident": "Entity", "RCAResult": "Entity", "RootCauseCandidate": "Entity",
    "EvidencePath": "Entity", "Knowledge": "Entity", "PropagationRule": "Knowledge",
    "CausalEdge": "Knowledge", "OperationPlan": "Entity", "PlanStep": "Entity",
    "RemediationPolicy": "Entity", "Guard": "Entity", "ActionType": "Entity",
    "ActionExecution": "Entity", "Feedback": "Entity", "Intent": "Entity",
    "Expectation": "Entity", "Condition": "Entity", "IntentReport": "Entity",
}
REQUIRED_OBJECT_PROPERTIES = {  # name -> (domain, range)
    "dependsOn": ("Resource", "Resource"), "calls": ("Resource", "Resource"),
    "hostedOn": ("Resource", "Resource"), "runsOn": ("Resource", "Resource"),
    "routedOver": ("Resource", "NetworkLink"), "connectsTo": ("NetworkLink", "Resource"),
    "locatedIn": ("Resource", "ComputeSite"), "partOf": ("Resource", "Resource"),
    "hasInterface": ("Resource", "NetworkInterface"),
    "hasAccelerator": ("ComputeNode", "Accelerator"),
    "memberOf": ("KubernetesNode", "KubernetesCluster"),
    "inNamespace": ("Resource", "Namespace"), "manages": ("Workload", "Pod"),
    "selects": ("KubernetesService", "Workload"), "exposes": ("Ingress", "KubernetesService"),
    "implementedBy": ("Service", "Resource"), "observes": ("MetricSeries", "Resource"),
    "aboutEntity": ("Event", "Resource"), "instanceOf": ("Event", "EventType"),
    "hasTemplate": ("LogEvent", "LogTemplate"), "generalizedTo": ("LogTemplate", "LogTemplate"),
    "partOfIncident": ("Event", "Incident"), "hasResult": ("Incident", "RCAResult"),
    "hasCandidate": ("RCAResult", "RootCauseCandidate"),
    "candidateEntity": ("RootCauseCandidate", "Resource"),
    "hasEvidence": ("RootCauseCandidate", "EvidencePath"),
    "causeType": ("CausalKnowledge", "Entity"), "effectType": ("CausalKnowledge", "Entity"),
    "hasStep": ("OperationPlan", "PlanStep"), "nextStep": ("PlanStep", "PlanStep"),
    "mitigates": ("OperationPlan", "AlertDefinition"),
    "appliesTo": ("RemediationPolicy", "Entity"),
    "usesPlan": ("RemediationPolicy", "OperationPlan"),
    "guardedBy": ("RemediationPolicy", "Guard"), "executes": ("ActionExecution", "ActionType"),
    "targets": ("ActionExecution", "Resource"), "hasExpectation": ("Intent", "Expectation"),
    "hasCondition": ("Expectation", "Condition"), "reportsOn": ("IntentReport", "Intent"),
}
STR, INT, DBL, BOOL, DT = XSD.string, XSD.integer, XSD.double, XSD.boolean, XSD.dateTime
REQUIRED_DATATYPE_PROPERTIES = {
    "name": STR, "description": STR, "status": STR, "latitude": DBL, "longitude": DBL,
    "region": STR, "tier": STR, "cpuCores": INT, "cpuUsedCores": DBL, "memoryGiB": DBL,
    "memoryUsedGiB": DBL, "storageGiB": DBL, "acceleratorModel": STR,
    "acceleratorMemoryGiB": DBL, "allocated": BOOL, "computeCapacityTflops": DBL,
    "latencyMs": DBL, "bandwidthMbps": DBL, "utilisation": DBL, "packetLossRatio": DBL,
    "jitterMs": DBL, "ipAddress": STR, "macAddress": STR, "interfaceName": STR, "image": STR,
    "replicas": INT, "cpuRequestCores": DBL, "memoryRequestGiB": DBL, "kubernetesVersion": STR,
    "namespaceName": STR, "port": INT, "metricName": STR, "unit": STR, "seriesId": STR,
    "startTime": DT, "endTime": DT, "eventTime": DT, "anomalyScore": DBL, "direction": STR,
    "templateText": STR, "templateVersion": INT, "count": INT, "severity": STR,
    "expression": STR, "forSeconds": DBL, "summary": STR, "runbookUrl": STR, "fingerprint": STR,
    "alertStatus": STR, "score": DBL, "rank": INT, "hypothesis": STR, "confidence": DBL,
    "support": INT, "stepOrder": INT, "command": STR, "weight": DBL, "callRate": DBL,
    "protocol": STR, "autonomyLevel": STR, "targetValue": DBL, "comparator": STR,
    "successCount": INT, "failureCount": INT, "slaLatencyMs": DBL, "viaRelation": STR,
}
REQUIRED_EDGE_PROPERTIES = {"weight", "callRate", "protocol", "latencyMs", "bandwidthMbps",
                            "confidence", "support", "rank", "score"}

SUPPORTED_SHACL = {SH.targetClass, SH.property, SH.path, SH.datatype, SH.minCount,
                   SH.maxCount, SH.minInclusive, SH.maxInclusive, SH["in"], SH.pattern,
                   SH["class"], SH.message}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def onto() -> rdflib.Graph:
    return rdflib.Graph().parse(CNC_TTL, format="turtle")


@pytest.fixture(scope="module")
def shapes() -> rdflib.Graph:
    return rdflib.Graph().parse(SHAPES_TTL, format="turtle")


def local(iri: rdflib.term.Node) -> str:
    text = str(iri)
    assert text.startswith(str(CNC)), f"{text} is not in the cnc: namespace"
    return text[len(str(CNC)):]


def cnc_terms(g: rdflib.Graph, rdf_type: URIRef) -> list[URIRef]:
    return sorted(s for s in g.subjects(RDF.type, rdf_type)
                  if isinstance(s, URIRef) and str(s).startswith(str(CNC)))


def is_fact_metadata(g: rdflib.Graph, prop: URIRef) -> bool:
    return g.value(prop, CNC.factMetadata) == Literal(True)


def ancestors(g: rdflib.Graph, cls: URIRef) -> set[rdflib.term.Node]:
    return {a for a in g.transitive_objects(cls, RDFS.subClassOf) if a is not None} - {cls}


def rdfxml_copy(g: rdflib.Graph, directory: Path, name: str = "cnc.owl") -> Path:
    path = directory / name
    g.serialize(destination=str(path), format="xml")
    return path


needs_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="HermiT needs a Java runtime (Java 17): `java` is not on PATH",
)


# --------------------------------------------------------------------------- reasoning


def run_hermit(path: Path) -> tuple[object, float]:
    """Load an RDF/XML file into a fresh owlready2 world and classify it with HermiT."""
    import owlready2

    world = owlready2.World()
    world.get_ontology(path.as_uri()).load()
    started = time.perf_counter()
    owlready2.sync_reasoner(world, infer_property_values=False, debug=0)
    return world, time.perf_counter() - started


@needs_java
def test_hermit_finds_the_ontology_consistent(onto: rdflib.Graph, tmp_path: Path) -> None:
    import owlready2

    path = rdfxml_copy(onto, tmp_path)
    try:
        world, seconds = run_hermit(path)
    except owlready2.OwlReadyInconsistentOntologyError as exc:  # pragma: no cover
        pytest.fail(f"HermiT finds cnc.ttl inconsistent: {exc}")
    unsatisfiable = list(world.inconsistent_classes())  # type: ignore[attr-defined]
    assert unsatisfiable == [], f"unsatisfiable classes: {unsatisfiable}"
    assert seconds < 60, f"HermiT took {seconds:.1f}s"


@needs_java
def test_hermit_rejects_an_individual_that_breaks_disjointness(
    onto: rdflib.Graph, tmp_path: Path
) -> None:
    """Proves the reasoner really ran over our axioms: a router that is a switch is absurd."""
    import owlready2

    g = rdflib.Graph() + onto
    bad = URIRef("https://w3id.org/autocnc/id/test/network/Router/r1")
    g.add((bad, RDF.type, OWL.NamedIndividual))
    g.add((bad, RDF.type, CNC.Router))
    g.add((bad, RDF.type, CNC.Switch))
    with pytest.raises(owlready2.OwlReadyInconsistentOntologyError):
        run_hermit(rdfxml_copy(g, tmp_path, "bad.owl"))


DL_CHECK_JAVA = """
import java.io.File;
import org.semanticweb.owlapi.apibinding.OWLManager;
import org.semanticweb.owlapi.model.*;
import org.semanticweb.owlapi.profiles.*;

public class DLCheck {
    public static void main(String[] args) throws Exception {
        OWLOntologyManager manager = OWLManager.createOWLOntologyManager();
        OWLOntology ontology = manager.loadOntologyFromOntologyDocument(new File(args[0]));
        OWLProfileReport report = new OWL2DLProfile().checkOntology(ontology);
        for (OWLProfileViolation v : report.getViolations()) {
            System.out.println("VIOLATION " + v);
        }
        System.out.println("AXIOMS " + ontology.getAxiomCount());
    }
}
"""


@pytest.mark.skipif(shutil.which("java") is None or shutil.which("javac") is None,
                    reason="the OWL 2 DL profile check compiles a Java snippet: needs a JDK")
def test_ontology_is_in_the_owl2_dl_profile(onto: rdflib.Graph, tmp_path: Path) -> None:
    import owlready2

    jar = Path(owlready2.__file__).resolve().parent / "hermit" / "HermiT.jar"
    source = tmp_path / "DLCheck.java"
    source.write_text(DL_CHECK_JAVA, encoding="utf-8")
    path = rdfxml_copy(onto, tmp_path)
    done = subprocess.run(["java", "-cp", str(jar), str(source), str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    violations = [line for line in done.stdout.splitlines() if line.startswith("VIOLATION")]
    assert violations == []
    axioms = int(done.stdout.split("AXIOMS ")[1].split()[0])
    assert axioms > 500  # the OWL API really read the ontology


# --------------------------------------------------------------------------- conventions


def test_ontology_header(onto: rdflib.Graph) -> None:
    assert (ONTOLOGY_IRI, RDF.type, OWL.Ontology) in onto
    version = str(onto.value(ONTOLOGY_IRI, OWL.versionInfo))
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    from ontology import load_ontology

    assert load_ontology().version == version


def test_every_cnc_term_has_english_label_and_comment(onto: rdflib.Graph) -> None:
    missing = []
    for kind in (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty):
        for term in cnc_terms(onto, kind):
            for annotation in (RDFS.label, RDFS.comment):
                texts = [o for o in onto.objects(term, annotation)
                         if isinstance(o, Literal) and o.language == "en" and str(o).strip()]
                if len(texts) != 1:
                    missing.append(f"{local(term)} {annotation.n3(onto.namespace_manager)}")
    assert missing == []


def test_no_cnc_term_is_declared_as_two_kinds(onto: rdflib.Graph) -> None:
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty,
             OWL.NamedIndividual)
    seen: dict[URIRef, list[str]] = {}
    for kind in kinds:
        for term in cnc_terms(onto, kind):
            seen.setdefault(term, []).append(str(kind).rsplit("#", 1)[-1])
    assert {local(t): k for t, k in seen.items() if len(k) > 1} == {}


def test_every_class_is_an_upper_camel_entity(onto: rdflib.Graph) -> None:
    for cls in cnc_terms(onto, OWL.Class):
        assert UPPER_CAMEL.match(local(cls)), local(cls)
        if cls != CNC.Entity:
            assert CNC.Entity in ancestors(onto, cls), f"{local(cls)} is not a cnc:Entity"


def test_required_classes_and_hierarchy(onto: rdflib.Graph) -> None:
    classes = set(cnc_terms(onto, OWL.Class))
    for name, parent in REQUIRED_SUBCLASSES.items():
        assert CNC[name] in classes, f"missing class cnc:{name}"
        assert CNC[parent] in ancestors(onto, CNC[name]), f"cnc:{name} must be a {parent}"
    assert CNC.GpuNode not in classes  # GPU-ness comes from accelerators


def test_datatype_properties_have_exactly_one_allowed_range(onto: rdflib.Graph) -> None:
    for prop in cnc_terms(onto, OWL.DatatypeProperty):
        ranges = list(onto.objects(prop, RDFS.range))
        assert len(ranges) == 1 and ranges[0] in ALLOWED_RANGES, (local(prop), ranges)
        domains = list(onto.objects(prop, RDFS.domain))
        assert len(domains) <= 1, (local(prop), domains)
        for dom in domains:
            assert (dom, RDF.type, OWL.Class) in onto and str(dom).startswith(str(CNC))


def test_required_datatype_properties_and_ranges(onto: rdflib.Graph) -> None:
    declared = {local(p): onto.value(p, RDFS.range)
                for p in cnc_terms(onto, OWL.DatatypeProperty)}
    for name, rng in REQUIRED_DATATYPE_PROPERTIES.items():
        assert declared.get(name) == rng, f"cnc:{name} must have range {rng}"


def test_property_names_are_columns_the_store_can_use(onto: rdflib.Graph) -> None:
    """lowerCamelCase, unique even case-insensitively, never a store column name."""
    names = [local(p) for p in cnc_terms(onto, OWL.DatatypeProperty)
             if not is_fact_metadata(onto, p)]
    names += [local(p) for p in cnc_terms(onto, OWL.ObjectProperty)]
    for name in names:
        assert LOWER_CAMEL.match(name), f"{name} is not lowerCamelCase"
        assert name not in RESERVED_NAMES, f"{name} is a reserved store column name"
    lowered = [n.lower() for n in names]
    assert len(set(lowered)) == len(lowered), "property names collide (case-insensitively)"
    reserved_lower = {r.lower() for r in RESERVED_NAMES}
    assert not set(lowered) & reserved_lower


def test_fact_metadata_properties_are_only_the_store_columns(onto: rdflib.Graph) -> None:
    meta = {local(p): onto.value(p, RDFS.range)
            for p in cnc_terms(onto, OWL.DatatypeProperty) if is_fact_metadata(onto, p)}
    assert meta == FACT_METADATA


def test_object_properties_have_one_cnc_domain_and_range(onto: rdflib.Graph) -> None:
    classes = set(cnc_terms(onto, OWL.Class))
    for prop in cnc_terms(onto, OWL.ObjectProperty):
        domains = list(onto.objects(prop, RDFS.domain))
        ranges = list(onto.objects(prop, RDFS.range))
        assert len(domains) == 1 and domains[0] in classes, (local(prop), domains)
        assert len(ranges) == 1 and ranges[0] in classes, (local(prop), ranges)


def test_required_object_properties(onto: rdflib.Graph) -> None:
    for name, (dom, rng) in REQUIRED_OBJECT_PROPERTIES.items():
        prop = CNC[name]
        assert (prop, RDF.type, OWL.ObjectProperty) in onto, f"missing cnc:{name}"
        assert onto.value(prop, RDFS.domain) == CNC[dom], f"cnc:{name} domain"
        assert onto.value(prop, RDFS.range) == CNC[rng], f"cnc:{name} range"
    for name in ("dependsOn", "partOf"):
        assert (CNC[name], RDF.type, OWL.TransitiveProperty) in onto
    dependency = set(onto.transitive_subjects(RDFS.subPropertyOf, CNC.dependsOn))
    assert {CNC.calls, CNC.hostedOn, CNC.runsOn, CNC.routedOver} <= dependency


def test_edge_properties_are_marked_and_have_no_domain(onto: rdflib.Graph) -> None:
    edge = {local(p) for p in cnc_terms(onto, OWL.DatatypeProperty)
            if onto.value(p, CNC.edgeProperty) == Literal(True)}
    assert REQUIRED_EDGE_PROPERTIES <= edge
    for name in edge:  # their subject may be a relation, so no domain may be inferred
        assert onto.value(CNC[name], RDFS.domain) is None, name
    assert (CNC.edgeProperty, RDF.type, OWL.AnnotationProperty) in onto


def test_external_terms_are_declared(onto: rdflib.Graph) -> None:
    """Every term of another vocabulary used in an axiom is declared, so HermiT sees DL."""
    undeclared = set()
    for predicate in (RDFS.subClassOf, RDFS.subPropertyOf, RDFS.domain, RDFS.range,
                      OWL.equivalentClass):
        for s, o in onto.subject_objects(predicate):
            for term in (s, o):
                if (isinstance(term, URIRef) and not str(term).startswith(str(XSD))
                        and onto.value(term, RDF.type) is None):
                    undeclared.add(str(term))
    assert undeclared == set()


def test_cats_metric_annotations_point_to_concepts(onto: rdflib.Graph) -> None:
    values = list(onto.objects(None, CNC.catsMetric))
    assert values, "no property is linked to a CATS metric category"
    for value in values:
        assert str(value).startswith(CATSM)
        assert (value, RDF.type, SKOS.Concept) in onto
    assert onto.value(CNC.cpuCores, CNC.catsMetric) == URIRef(CATSM + "ComputeCPU")
    assert onto.value(CNC.latencyMs, CNC.catsMetric) == URIRef(CATSM + "NetworkDelay")
    assert onto.value(CNC.bandwidthMbps, CNC.catsMetric) == URIRef(CATSM + "NetworkBandwidth")


# --------------------------------------------------------------------------- SHACL shapes


def property_shapes(shapes: rdflib.Graph) -> list[tuple[rdflib.term.Node, rdflib.term.Node]]:
    return [(node_shape, ps) for node_shape in shapes.subjects(RDF.type, SH.NodeShape)
            for ps in shapes.objects(node_shape, SH.property)]


def test_shapes_use_only_the_compiled_shacl_subset(shapes: rdflib.Graph) -> None:
    used = {p for p in shapes.predicates() if str(p).startswith(str(SH))}
    assert used <= SUPPORTED_SHACL, sorted(str(p) for p in used - SUPPORTED_SHACL)
    for _, ps in property_shapes(shapes):
        assert isinstance(shapes.value(ps, SH.path), URIRef), "sh:path must be one IRI"


def test_shapes_agree_with_the_ontology(onto: rdflib.Graph, shapes: rdflib.Graph) -> None:
    classes = set(cnc_terms(onto, OWL.Class))
    datatype_props = set(cnc_terms(onto, OWL.DatatypeProperty))
    object_props = set(cnc_terms(onto, OWL.ObjectProperty))
    node_shapes = list(shapes.subjects(RDF.type, SH.NodeShape))
    assert len(node_shapes) >= 20
    for node_shape in node_shapes:
        targets = list(shapes.objects(node_shape, SH.targetClass))
        assert len(targets) == 1 and targets[0] in classes, node_shape
        assert local(node_shape) == f"{local(targets[0])}Shape"
    for node_shape, ps in property_shapes(shapes):
        where = f"{local(node_shape)} / {shapes.value(ps, SH.path)}"
        path = shapes.value(ps, SH.path)
        message = shapes.value(ps, SH.message)
        assert isinstance(message, Literal) and len(str(message)) > 10, where
        if path in object_props:
            assert shapes.value(ps, SH["class"]) in classes, f"{where}: needs a cnc sh:class"
            assert shapes.value(ps, SH.minCount) is None, f"{where}: no minCount on relations"
            assert shapes.value(ps, SH.datatype) is None, where
            continue
        assert path in datatype_props, f"{where}: unknown property"
        assert shapes.value(ps, SH["class"]) is None, where
        assert shapes.value(ps, SH.datatype) == onto.value(path, RDFS.range), where
        for bound in (SH.minInclusive, SH.maxInclusive):
            value = shapes.value(ps, bound)
            if value is not None:
                assert isinstance(value, Literal), where
                assert value.datatype == onto.value(path, RDFS.range), f"{where}: {bound}"
        listed = shapes.value(ps, SH["in"])
        if listed is not None:
            items = list(Collection(shapes, listed))
            assert items and all(isinstance(x, Literal) and x.datatype is None
                                 and x.language is None for x in items), where
        pattern = shapes.value(ps, SH.pattern)
        if pattern is not None:
            re.compile(str(pattern))


def test_required_shape_constraints(shapes: rdflib.Graph) -> None:
    def constraint(cls: str, prop: str) -> rdflib.term.Node:
        shape = CNC[f"{cls}Shape"]
        for ps in shapes.objects(shape, SH.property):
            if shapes.value(ps, SH.path) == CNC[prop]:
                return ps
        raise AssertionError(f"no constraint on {prop} in cnc:{cls}Shape")

    assert shapes.value(constraint("Entity", "name"), SH.maxCount) == Literal(1)
    for cls, prop in [("Alert", "fingerprint"), ("AlertDefinition", "expression"),
                      ("LogTemplate", "templateText"), ("PlanStep", "stepOrder"),
                      ("OperationPlan", "name"), ("MetricSeries", "metricName")]:
        assert shapes.value(constraint(cls, prop), SH.minCount) == Literal(1), (cls, prop)
    assert shapes.value(constraint("PlanStep", "stepOrder"), SH.minInclusive) == Literal(1)

    def listed(cls: str, prop: str) -> set[str]:
        head = shapes.value(constraint(cls, prop), SH["in"])
        assert head is not None, f"no sh:in on {prop} in cnc:{cls}Shape"
        return {str(x) for x in Collection(shapes, head)}

    assert listed("Alert", "alertStatus") == {"firing", "resolved"}
    assert listed("Anomaly", "direction") == {"up", "down"}


PREFIXES = """
@prefix cnc: <https://w3id.org/autocnc/ontology#> .
@prefix ex:  <https://w3id.org/autocnc/id/test/> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
"""

CONFORMING = PREFIXES + """
ex:site a cnc:EdgeSite ; cnc:name "edge-sh-01" ; cnc:tier "edge" ;
    cnc:latitude 31.23e0 ; cnc:longitude 121.47e0 .
ex:node a cnc:ComputeNode ; cnc:name "srv-01" ; cnc:cpuCores 64 ; cnc:memoryGiB 256.0e0 ;
    cnc:cpuUsedCores 12.5e0 ; cnc:utilisation 0.2e0 ; cnc:locatedIn ex:site ;
    cnc:hasAccelerator ex:gpu .
ex:gpu a cnc:GPU ; cnc:acceleratorModel "NVIDIA A100" ; cnc:acceleratorMemoryGiB 80.0e0 ;
    cnc:allocated true ; cnc:allocatedTo ex:pod .
ex:r1 a cnc:Router ; cnc:name "Chicago" ; cnc:latitude 41.88e0 ; cnc:longitude -87.63e0 .
ex:r2 a cnc:Router ; cnc:name "Denver" ; cnc:hasInterface ex:ge0 .
ex:ge0 a cnc:NetworkInterface ; cnc:interfaceName "ge-0/0/0" ;
    cnc:macAddress "00:1a:2b:3c:4d:5e" ; cnc:partOf ex:r2 .
ex:link a cnc:NetworkLink ; cnc:latencyMs 2.5e0 ; cnc:bandwidthMbps 10000.0e0 ;
    cnc:utilisation 0.3e0 ; cnc:packetLossRatio 0.0e0 ; cnc:connectsTo ex:r1 , ex:ge0 .
ex:cluster a cnc:KubernetesCluster ; cnc:kubernetesVersion "v1.30.2" ; cnc:locatedIn ex:site .
ex:knode a cnc:KubernetesNode ; cnc:memberOf ex:cluster ; cnc:runsOn ex:node .
ex:ns a cnc:Namespace ; cnc:name "shop" ; cnc:partOf ex:cluster .
ex:deploy a cnc:Deployment ; cnc:replicas 3 ; cnc:inNamespace ex:ns ; cnc:manages ex:pod .
ex:pod a cnc:Pod ; cnc:status "Running" ; cnc:restartCount 0 ; cnc:runsOn ex:knode ;
    cnc:inNamespace ex:ns .
ex:ctr a cnc:Container ; cnc:image "shop/cart:1.2" ; cnc:partOf ex:pod .
ex:svc a cnc:KubernetesService ; cnc:port 8080 ; cnc:serviceType "ClusterIP" ;
    cnc:selects ex:deploy .
ex:series a cnc:MetricSeries ; cnc:metricName "latency" ; cnc:unit "ms" ;
    cnc:seriesId "s-1" ; cnc:observes ex:pod .
ex:anomaly a cnc:Anomaly ; cnc:direction "up" ; cnc:anomalyScore 4.2e0 ;
    cnc:startTime "2024-05-01T10:00:00Z"^^xsd:dateTime ; cnc:detectedIn ex:series ;
    cnc:aboutEntity ex:pod .
ex:rule a cnc:AlertDefinition ; cnc:name "KubePodCrashLooping" ; cnc:severity "warning" ;
    cnc:expression "rate(kube_pod_container_status_restarts_total[5m]) > 0" ;
    cnc:forSeconds 900.0e0 ; cnc:runbookUrl "https://runbooks.prometheus-operator.dev/x" .
ex:alert a cnc:Alert ; cnc:fingerprint "5f3a1c" ; cnc:alertStatus "firing" ;
    cnc:instanceOf ex:rule ; cnc:aboutEntity ex:pod ; cnc:partOfIncident ex:incident ;
    cnc:startTime "2024-05-01T10:01:00Z"^^xsd:dateTime .
ex:tpl a cnc:LogTemplate ; cnc:templateText "Received block <*> of size <*>" ;
    cnc:templateVersion 1 ; cnc:count 42 .
ex:log a cnc:LogEvent ; cnc:hasTemplate ex:tpl ;
    cnc:eventTime "2024-05-01T10:00:30Z"^^xsd:dateTime .
ex:incident a cnc:Incident ; cnc:incidentStatus "open" ; cnc:hasResult ex:rca .
ex:rca a cnc:RCAResult ; cnc:generatedAt "2024-05-01T10:02:00Z"^^xsd:dateTime ;
    cnc:hasCandidate ex:cand .
ex:cand a cnc:RootCauseCandidate ; cnc:rank 1 ; cnc:score 0.9e0 ; cnc:confidence 0.8e0 ;
    cnc:candidateEntity ex:node ; cnc:hasEvidence ex:path .
ex:path a cnc:EvidencePath ; cnc:hopCount 3 .
ex:edge a cnc:CausalEdge ; cnc:confidence 0.7e0 ; cnc:support 12 ; cnc:causeType ex:rule ;
    cnc:effectType ex:rule .
ex:plan a cnc:OperationPlan ; cnc:name "Restart crash-looping pod" ; cnc:hasStep ex:step1 ;
    cnc:mitigates ex:rule .
ex:step1 a cnc:PlanStep ; cnc:stepOrder 1 ; cnc:command "kubectl delete pod" .
ex:guard a cnc:Guard ; cnc:guardType "frequency" ; cnc:maxExecutions 3 ;
    cnc:windowSeconds 3600.0e0 .
ex:policy a cnc:RemediationPolicy ; cnc:autonomyLevel "L3" ; cnc:usesPlan ex:plan ;
    cnc:guardedBy ex:guard ; cnc:successCount 5 ; cnc:failureCount 0 .
ex:restart a cnc:ActionType ; cnc:reversible false .
ex:operator a cnc:Agent ; cnc:name "alice" .
ex:run a cnc:ActionExecution ; cnc:outcome "succeeded" ; cnc:dryRun true ;
    cnc:executes ex:restart ; cnc:targets ex:pod ; cnc:performedBy ex:operator .
ex:intent a cnc:Intent ; cnc:hasExpectation ex:exp .
ex:exp a cnc:Expectation ; cnc:hasCondition ex:cond ; cnc:hasTarget ex:svc .
ex:cond a cnc:Condition ; cnc:metricName "latency" ; cnc:comparator "<" ;
    cnc:targetValue 20.0e0 .
ex:report a cnc:IntentReport ; cnc:compliant true ; cnc:reportsOn ex:intent .
"""


def shacl_results(data_ttl: str, onto: rdflib.Graph,
                  shapes: rdflib.Graph) -> tuple[bool, set[tuple[str, str, str]], list[str]]:
    """(conforms, {(focus local name, path local name, constraint component)}, messages)."""
    from pyshacl import validate

    data = rdflib.Graph().parse(data=data_ttl, format="turtle")
    conforms, report, _ = validate(data, shacl_graph=shapes, ont_graph=onto,
                                   inference="none", advanced=False, meta_shacl=False)
    found, messages = set(), []
    for result in report.subjects(RDF.type, SH.ValidationResult):
        focus = str(report.value(result, SH.focusNode)).rsplit("/", 1)[-1]
        path = report.value(result, SH.resultPath)
        component = str(report.value(result, SH.sourceConstraintComponent))
        found.add((focus, local(path) if path is not None else "",
                   component.rsplit("#", 1)[-1]))
        messages.append(str(report.value(result, SH.resultMessage)))
    return bool(conforms), found, messages


def test_pyshacl_accepts_conforming_data(onto: rdflib.Graph, shapes: rdflib.Graph) -> None:
    conforms, found, messages = shacl_results(CONFORMING, onto, shapes)
    assert conforms, (found, messages)


def test_pyshacl_reports_the_expected_violations(onto: rdflib.Graph,
                                                 shapes: rdflib.Graph) -> None:
    data = PREFIXES + """
    ex:link a cnc:NetworkLink ; cnc:latencyMs -5.0e0 ; cnc:bandwidthMbps 100.0e0 .
    ex:alert a cnc:Alert ; cnc:fingerprint "5f3a1c" ; cnc:alertStatus "boom" .
    """
    conforms, found, messages = shacl_results(data, onto, shapes)
    assert not conforms
    assert found == {("link", "latencyMs", "MinInclusiveConstraintComponent"),
                     ("alert", "alertStatus", "InConstraintComponent")}
    assert sorted(messages) == [
        "A network link's latencyMs must be one number >= 0 (milliseconds).",
        "An alert's alertStatus must be firing or resolved.",
    ]


@pytest.mark.parametrize(("data", "expected"), [
    ('ex:a a cnc:Alert ; cnc:alertStatus "firing" .',
     ("a", "fingerprint", "MinCountConstraintComponent")),
    ('ex:d a cnc:AlertDefinition ; cnc:severity "critical" .',
     ("d", "expression", "MinCountConstraintComponent")),
    ("ex:t a cnc:LogTemplate ; cnc:count 3 .",
     ("t", "templateText", "MinCountConstraintComponent")),
    ("ex:s a cnc:PlanStep ; cnc:stepOrder 0 .",
     ("s", "stepOrder", "MinInclusiveConstraintComponent")),
    ('ex:p a cnc:OperationPlan ; cnc:description "no name" .',
     ("p", "name", "MinCountConstraintComponent")),
    ('ex:m a cnc:MetricSeries ; cnc:unit "ms" .',
     ("m", "metricName", "MinCountConstraintComponent")),
    ('ex:x a cnc:Anomaly ; cnc:direction "sideways" .',
     ("x", "direction", "InConstraintComponent")),
    ("ex:c a cnc:CloudDataCentre ; cnc:latitude 91.0e0 .",
     ("c", "latitude", "MaxInclusiveConstraintComponent")),
    ("ex:e a cnc:EndDevice ; cnc:longitude -181.0e0 .",
     ("e", "longitude", "MinInclusiveConstraintComponent")),
    ("ex:l a cnc:NetworkLink ; cnc:utilisation 1.5e0 .",
     ("l", "utilisation", "MaxInclusiveConstraintComponent")),
    ("ex:l a cnc:NetworkLink ; cnc:bandwidthMbps -1.0e0 .",
     ("l", "bandwidthMbps", "MinInclusiveConstraintComponent")),
    ('ex:n a cnc:ComputeNode ; cnc:cpuCores "eight" .',  # not a number: both fail
     {("n", "cpuCores", "DatatypeConstraintComponent"),
      ("n", "cpuCores", "MinInclusiveConstraintComponent")}),
    ("ex:n a cnc:ComputeNode ; cnc:memoryGiB -2.0e0 .",
     ("n", "memoryGiB", "MinInclusiveConstraintComponent")),
    ('ex:g a cnc:NPU ; cnc:allocated "yes" .',
     ("g", "allocated", "DatatypeConstraintComponent")),
    ('ex:r a cnc:Router ; cnc:name "a" , "b" .',
     ("r", "name", "MaxCountConstraintComponent")),
    ('ex:v a cnc:LogEvent ; cnc:startTime "yesterday" .',
     ("v", "startTime", "DatatypeConstraintComponent")),
    ("ex:pod a cnc:Pod ; cnc:runsOn ex:host . ex:host a cnc:ComputeNode .",
     ("pod", "runsOn", "ClassConstraintComponent")),
    ('ex:i a cnc:NetworkInterface ; cnc:macAddress "00:1a:2b" .',
     ("i", "macAddress", "PatternConstraintComponent")),
    ('ex:q a cnc:RemediationPolicy ; cnc:autonomyLevel "L9" .',
     ("q", "autonomyLevel", "InConstraintComponent")),
    ('ex:k a cnc:CausalEdge ; cnc:confidence 1.2e0 .',
     ("k", "confidence", "MaxInclusiveConstraintComponent")),
])
def test_pyshacl_reports_each_kind_of_violation(data: str, expected: object,
                                                onto: rdflib.Graph,
                                                shapes: rdflib.Graph) -> None:
    conforms, found, messages = shacl_results(PREFIXES + data, onto, shapes)
    assert not conforms
    assert found == (expected if isinstance(expected, set) else {expected}), messages
    assert all(m and "cnc:" not in m for m in messages)
