// A check of IBM/sarama, the most used Go Kafka client, against a broker: its admin client
// (topics, groups, offsets), an idempotent producer with every codec, and consumer groups with
// the range and sticky balancers that commit their offsets. Run by tests/server/test_sarama.py:
//
//	sarama-check BOOTSTRAP TOPIC
//
// It prints one JSON object of what it saw and exits 0, or prints the first failure and exits 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

const (
	partitions       = 3
	perCodec         = 20
	consumeTimeout   = 60 * time.Second
	rangeGroup       = "sarama-range"
	stickyGroup      = "sarama-sticky"
	rangeGroupMember = 2
)

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
	"zstd":   sarama.CompressionZSTD,
}

type report struct {
	Version        string           `json:"version"`
	TopicListed    bool             `json:"topic_listed"`
	Partitions     int              `json:"partitions"`
	Produced       map[string]int   `json:"produced"`
	Newest         map[int32]int64  `json:"newest"`
	Oldest         map[int32]int64  `json:"oldest"`
	Consumed       map[string]int   `json:"consumed"`
	Distinct       map[string]int   `json:"distinct"`
	Committed      map[string]int64 `json:"committed"`
	Groups         []string         `json:"groups"`
	RangeMembers   int              `json:"range_members"`
	Deleted        string           `json:"deleted"`
	GroupsAfterDel []string         `json:"groups_after_delete"`
	PhasesMs       map[string]int64 `json:"phases_ms"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sarama-check: "+format+"\n", args...)
	os.Exit(1)
}

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V4_0_0_0
	c.ClientID = "sarama-check"
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	return c
}

// producerConfig is sarama's idempotent producer: acks=all, one request in flight, retries.
func producerConfig(codec sarama.CompressionCodec) *sarama.Config {
	c := config()
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Retry.Max = 5
	c.Producer.Compression = codec
	return c
}

// handler counts what a group member receives and marks each message's offset.
type handler struct {
	mu       sync.Mutex
	seen     map[string]int
	total    int
	want     int
	done     chan struct{}
	doneOnce sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error { return nil }

// Cleanup commits what this member marked when its session ends (auto-commit is off).
func (h *handler) Cleanup(session sarama.ConsumerGroupSession) error {
	session.Commit()
	return nil
}
func (h *handler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(message.Value)]++
		h.total++
		reached := len(h.seen) >= h.want
		h.mu.Unlock()
		session.MarkMessage(message, "")
		if reached {
			// One commit at the end: a commit per message would wait behind the member's long-poll
			// fetch on the same connection (answers come in request order, on Kafka too).
			session.Commit()
			h.doneOnce.Do(func() { close(h.done) })
		}
	}
	return nil
}

// consume runs `members` members of `group` with `strategy` until every produced value was seen.
func consume(bootstrap, topic, group string, strategy sarama.BalanceStrategy, members, want int) *handler {
	h := &handler{seen: map[string]int{}, want: want, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var groups []sarama.ConsumerGroup
	for i := 0; i < members; i++ {
		c := config()
		c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
		consumer, err := sarama.NewConsumerGroup([]string{bootstrap}, group, c)
		if err != nil {
			fail("consumer group %s: %v", group, err)
		}
		groups = append(groups, consumer)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := consumer.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
					fail("consume %s: %v", group, err)
				}
			}
		}()
	}
	select {
	case <-h.done:
	case <-time.After(consumeTimeout):
		fail("group %s saw %d of %d values in %s", group, len(h.seen), want, consumeTimeout)
	}
	cancel()
	wg.Wait()
	for _, consumer := range groups {
		if err := consumer.Close(); err != nil {
			fail("close %s: %v", group, err)
		}
	}
	return h
}

func sortedGroups(admin sarama.ClusterAdmin) []string {
	listed, err := admin.ListConsumerGroups()
	if err != nil {
		fail("list groups: %v", err)
	}
	var names []string
	for name := range listed {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: sarama-check BOOTSTRAP TOPIC")
	}
	bootstrap, topic := os.Args[1], os.Args[2]
	out := report{Version: config().Version.String(), Produced: map[string]int{}, Newest: map[int32]int64{},
		Oldest: map[int32]int64{}, Consumed: map[string]int{}, Distinct: map[string]int{}, Committed: map[string]int64{},
		PhasesMs: map[string]int64{}}
	started := time.Now()
	phase := func(name string) {
		out.PhasesMs[name] = time.Since(started).Milliseconds()
		started = time.Now()
	}

	admin, err := sarama.NewClusterAdmin([]string{bootstrap}, config())
	if err != nil {
		fail("admin: %v", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		fail("create topic: %v", err)
	}
	topics, err := admin.ListTopics()
	if err != nil {
		fail("list topics: %v", err)
	}
	_, out.TopicListed = topics[topic]
	described, err := admin.DescribeTopics([]string{topic})
	if err != nil || len(described) != 1 || described[0].Err != sarama.ErrNoError {
		fail("describe topics: %v %v", err, described)
	}
	out.Partitions = len(described[0].Partitions)

	total := 0
	for name, codec := range codecs {
		producer, err := sarama.NewSyncProducer([]string{bootstrap}, producerConfig(codec))
		if err != nil {
			fail("producer %s: %v", name, err)
		}
		for i := 0; i < perCodec; i++ {
			message := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i)),
				Value: sarama.StringEncoder(fmt.Sprintf("%s-%d", name, i))}
			if _, _, err := producer.SendMessage(message); err != nil {
				fail("send %s: %v", name, err)
			}
			out.Produced[name]++
			total++
		}
		if err := producer.Close(); err != nil {
			fail("close producer %s: %v", name, err)
		}
	}

	phase("produce")
	client, err := sarama.NewClient([]string{bootstrap}, config())
	if err != nil {
		fail("client: %v", err)
	}
	defer client.Close()
	for p := int32(0); p < partitions; p++ {
		if out.Newest[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			fail("newest offset: %v", err)
		}
		if out.Oldest[p], err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			fail("oldest offset: %v", err)
		}
	}

	for group, run := range map[string]struct {
		strategy sarama.BalanceStrategy
		members  int
	}{rangeGroup: {sarama.NewBalanceStrategyRange(), rangeGroupMember}, stickyGroup: {sarama.NewBalanceStrategySticky(), 1}} {
		h := consume(bootstrap, topic, group, run.strategy, run.members, total)
		out.Consumed[group], out.Distinct[group] = h.total, len(h.seen)
		committed, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2}})
		if err != nil {
			fail("committed offsets of %s: %v", group, err)
		}
		for _, block := range committed.Blocks[topic] {
			out.Committed[group] += block.Offset
		}
		phase(group)
	}
	out.RangeMembers = rangeGroupMember
	out.Groups = sortedGroups(admin)
	descriptions, err := admin.DescribeConsumerGroups([]string{rangeGroup})
	if err != nil || len(descriptions) != 1 || descriptions[0].State != "Empty" {
		fail("describe %s: %v %+v", rangeGroup, err, descriptions)
	}
	if err := admin.DeleteConsumerGroup(rangeGroup); err != nil {
		fail("delete group: %v", err)
	}
	out.Deleted = rangeGroup
	out.GroupsAfterDel = sortedGroups(admin)

	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}
