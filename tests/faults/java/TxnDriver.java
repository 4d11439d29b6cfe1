// A transactional kafka-clients producer driven line by line from stdin, for the fault probes:
// each command's outcome is printed as one line, so a test can put a fault between two steps.
//
//   java -cp '<kafka libs>/*:<classes>' TxnDriver BOOTSTRAP TRANSACTIONAL_ID [key=value ...]
//
// Commands: init | begin | send PARTITION TOPIC VALUE | flush | commit | abort | close.
// Answers: "done COMMAND", or "error COMMAND EXCEPTION-CLASS MESSAGE"; each acknowledged send
// prints "ack VALUE PARTITION OFFSET", each failed one "nack VALUE EXCEPTION-CLASS".
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnDriver {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("transactional.id", args[1]);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        for (int i = 2; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            props.put(pair[0], pair[1]);
        }
        KafkaProducer<String, String> producer = new KafkaProducer<>(props);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split(" ", 4);
            String command = words[0];
            try {
                switch (command) {
                    case "init": producer.initTransactions(); break;
                    case "begin": producer.beginTransaction(); break;
                    case "send": {
                        final String value = words[3];
                        producer.send(new ProducerRecord<>(words[2], Integer.parseInt(words[1]), null, value), (meta, error) -> {
                            if (error == null) {
                                say("ack " + value + " " + meta.partition() + " " + meta.offset());
                            } else {
                                say("nack " + value + " " + error.getClass().getSimpleName());
                            }
                        });
                        break;
                    }
                    case "flush": producer.flush(); break;
                    case "commit": producer.commitTransaction(); break;
                    case "abort": producer.abortTransaction(); break;
                    case "close": producer.close(); say("done close"); return;
                    default: throw new IllegalArgumentException(command);
                }
                say("done " + command);
            } catch (Exception e) {
                String message = String.valueOf(e.getMessage()).replace('\n', ' ');
                say("error " + command + " " + e.getClass().getSimpleName() + " " + message);
            }
        }
        producer.close();
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}
