// Starts a throwaway Neo4j 5.26 (Community) with a Bolt port on 127.0.0.1, for tests and CI.
//
// Usage (single-file source launch, no build step):
//   java -Xmx1g -cp '<libdir>/*' Launcher.java PORT DATADIR
//
// Prints "NEO4J READY bolt://127.0.0.1:PORT" on stdout once Bolt accepts connections,
// then blocks until the JVM is terminated; SIGTERM/SIGINT shut the database down cleanly.
// No HTTP server, no auth, no TLS, no file access through LOAD CSV.

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;

public class Launcher {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp 'lib/*' Launcher.java PORT DATADIR");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        Path dataDir = Path.of(args[1]).toAbsolutePath();
        Files.createDirectories(dataDir);
        String host = "127.0.0.1";

        Neo4j neo4j = Neo4jBuilders.newInProcessBuilder(dataDir)
                .withDisabledServer() // no HTTP/HTTPS connectors
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .withConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
                .withConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .withConfig(GraphDatabaseSettings.auth_enabled, false)
                // The engine must never read local files through Cypher (LOAD CSV FROM 'file:///...').
                .withConfig(GraphDatabaseSettings.allow_file_urls, false)
                .withConfig(GraphDatabaseSettings.pagecache_memory, 256L * 1024 * 1024)
                .withConfig(GraphDatabaseSettings.udc_enabled, false)
                // Netty's graceful-shutdown quiet period (default 5 s) makes every stop take
                // ~11 s; a throwaway test server does not need it. Internal settings, pinned
                // to the 5.26 line.
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5))
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("NEO4J STOPPING");
            System.out.flush();
            try {
                neo4j.close();
            } catch (Throwable t) {
                t.printStackTrace();
            } finally {
                System.out.println("NEO4J STOPPED");
                System.out.flush();
                stopped.countDown();
            }
        }, "neo4j-shutdown"));

        System.out.println("NEO4J READY bolt://" + host + ":" + port);
        System.out.flush();
        stopped.await();
    }
}
