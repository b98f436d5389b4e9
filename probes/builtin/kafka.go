package builtin

import (
	"errors"
	"github.com/tcagent/tcagent/bpf"
	"github.com/tcagent/tcagent/probes"
)

// The roles and capture keys of the kafka set: its span side
// (binder/semconv/kafka.go) reads the captures under these keys.
const (
	RoleKafkaSend    = "kafka.send"    // a producer's send of one message or a batch
	RoleKafkaReceive = "kafka.receive" // a consumer's fetch of one message
	// RoleKafkaHandoff is sarama's handoff of one fetched message to the
	// channel a partition consumer or a group's claim reads: one hit, all
	// captures at entry, offered again when the handoff waited.
	RoleKafkaHandoff = "kafka.handoff"

	KafkaTopic       = "topic"        // the client's own topic (a Writer's, a Reader's)
	KafkaMsgTopic    = "msg_topic"    // the (first) message's topic
	KafkaCount       = "count"        // how many messages a send carries
	KafkaKey         = "key"          // the (first) message's key
	KafkaKeyType     = "key_type"     // a sarama key's Encoder type word
	KafkaGroup       = "group"        // a Reader's consumer group
	KafkaPartition   = "partition"    // where the message went or came from
	KafkaOffset      = "offset"       // its offset there
	KafkaTraceparent = "traceparent"  // a consumed message's traceparent header
	KafkaMessage     = "message"      // a handed-off message's address, which tells a handoff offered again
	KafkaErrorCode   = "error_code"   // a returned error's value, read as a Kafka protocol error code
	KafkaJoinLen     = "join_len"     // a returned *errors.joinError's error count
	KafkaJoinType    = "join_type"    // the type word of its first error
	KafkaJoinMessage = "join_message" // its first error's message, when that type has it first
)

const (
	kafkaGo = "github.com/segmentio/kafka-go"
	sarama  = "github.com/IBM/sarama"
)

// The functions traced, with their registers under Go's ABI.
//
// kafka-go: (*Writer).WriteMessages(ctx, msgs ...Message) error: w in RAX,
// the messages' array in RDI, their count in RSI; the error in RAX and RBX.
// (*Reader).FetchMessage(ctx) (Message, error), which ReadMessage calls: r
// in RAX; the Message, too large for registers, is returned on the stack
// (at SP+8 at the RET, there being no stack arguments), the error in RAX
// and RBX.
//
// sarama: (*syncProducer).SendMessage(msg *ProducerMessage) (partition
// int32, offset int64, err error): msg in RBX; the partition in RAX, the
// offset in RBX, the error in RCX and RDI. (*syncProducer).SendMessages(msgs
// []*ProducerMessage) error: the slice in RBX and RCX (its length); the
// error in RAX and RBX.
//
// sarama's partitionConsumer.responseFeeder hands each fetched message
// to the consumer (partition consumer or group claim) in a select of the
// send on child.messages and two receives (dying, the expiry ticker): at
// its CALL to runtime.selectgo (emulated) AX points at the cases, the
// send first, {channel, pointer to msg}: the *ConsumerMessage is two hops
// from AX. The select runs again for the same message when the ticker
// fires first, and after a second tick the rest of the fetch, that message
// first, goes through a second select of the same send: both are traced
// (probes.SendSites tells them from the function's other selects by the
// channel they send on), and the span side drops a message's repeats.
//
// A failed call's error is, for a broker's refusal, an integer type (kafka-go's
// kafka.Error, an int; sarama's KError, an int16) whose data word points at
// its value: it is read as a code, which the span side names.
const (
	kgWriter, kgMsgs, kgCount = 0, 3, 4
	kgReader                  = 0
	smMsg                     = 1
	smMsgs, smCount           = 1, 2
)

// kafkaOffsets are the struct fields the kafka set reads.
type kafkaOffsets struct {
	writerTopic, readerConfig, configTopic, configGroup           uint16
	msgTopic, msgPartition, msgOffset, msgKey, msgHeaders, hdrVal uint16
	pmTopic, pmKey                                                uint16
	cmHeaders, cmKey, cmTopic, cmPartition, cmOffset, rhValue     uint16
	pcMessages                                                    uint16
}

// kafkaHeader is the size of kafka-go's protocol.Header {Key string; Value
// []byte} past its Value's offset: Value, a slice, is its last field, so the
// bytes between a message's headers are that offset plus this.
const kafkaHeader = 24

func kafkaProbes(b *probes.Binary, o *offsets, _ Options, rt probes.Runtime, id uint32) ([]*probes.Probe, error) {
	kg := hasFunc(b, kafkaGo+".(*Writer).WriteMessages") || hasFunc(b, kafkaGo+".(*Reader).FetchMessage")
	sm := hasFunc(b, sarama+".(*syncProducer).SendMessage") || hasFunc(b, sarama+".(*syncProducer).SendMessages")
	sc := hasFunc(b, saramaFeeder)
	if !kg && !sm && !sc {
		return nil, nil // neither module is used
	}
	var f kafkaOffsets
	if kg {
		if err := o.mustAll(
			fieldOffset{&f.writerTopic, kafkaGo + ".Writer.Topic"},
			fieldOffset{&f.readerConfig, kafkaGo + ".Reader.config"}, fieldOffset{&f.configTopic, kafkaGo + ".ReaderConfig.Topic"},
			fieldOffset{&f.configGroup, kafkaGo + ".ReaderConfig.GroupID"},
			fieldOffset{&f.msgTopic, kafkaGo + ".Message.Topic"}, fieldOffset{&f.msgPartition, kafkaGo + ".Message.Partition"},
			fieldOffset{&f.msgOffset, kafkaGo + ".Message.Offset"}, fieldOffset{&f.msgKey, kafkaGo + ".Message.Key"},
			fieldOffset{&f.msgHeaders, kafkaGo + ".Message.Headers"}, fieldOffset{&f.hdrVal, kafkaGo + "/protocol.Header.Value"},
		); err != nil {
			return nil, err
		}
	}
	if sm {
		if err := o.mustAll(fieldOffset{&f.pmTopic, sarama + ".ProducerMessage.Topic"}, fieldOffset{&f.pmKey, sarama + ".ProducerMessage.Key"}); err != nil {
			return nil, err
		}
	}
	if sc {
		if err := o.mustAll(fieldOffset{&f.cmHeaders, sarama + ".ConsumerMessage.Headers"}, fieldOffset{&f.cmKey, sarama + ".ConsumerMessage.Key"},
			fieldOffset{&f.cmTopic, sarama + ".ConsumerMessage.Topic"}, fieldOffset{&f.cmPartition, sarama + ".ConsumerMessage.Partition"},
			fieldOffset{&f.cmOffset, sarama + ".ConsumerMessage.Offset"}, fieldOffset{&f.rhValue, sarama + ".RecordHeader.Value"},
			fieldOffset{&f.pcMessages, sarama + ".partitionConsumer.messages"}); err != nil {
			return nil, err
		}
	}
	var out []*probes.Probe
	add := func(symbol, role string, build func(p *probes.Probe)) error {
		p, ok, err := probes.NewProbe(b, symbol, id+uint32(len(out)), rt)
		if err != nil || !ok {
			return err
		}
		build(p)
		p.Spec.Name = role
		p.Role = probes.Role{Kind: probes.RoleSemconv, Name: role}
		out = append(out, p)
		return nil
	}
	if kg {
		if err := add(kafkaGo+".(*Writer).WriteMessages", RoleKafkaSend, func(p *probes.Probe) {
			capture(p, false, KafkaTopic, field(kgWriter, 0, f.writerTopic))
			capture(p, false, KafkaMsgTopic, field(kgMsgs, 0, f.msgTopic))
			kafkaKey(p, false, field(kgMsgs, 0, f.msgKey))
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapReg, Reg: kgCount})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: KafkaCount, Type: "int", Size: 8})
			kafkaErrorOf(p, 0, 1, 8)
		}); err != nil {
			return nil, err
		}
		if err := add(kafkaGo+".(*Reader).FetchMessage", RoleKafkaReceive, func(p *probes.Probe) {
			capture(p, false, KafkaTopic, field(kgReader, 0, f.readerConfig+f.configTopic))
			capture(p, false, KafkaGroup, field(kgReader, 0, f.readerConfig+f.configGroup))
			msg := func(off uint16) uint16 { return 8 + off } // the Message on the stack
			capture(p, true, KafkaMsgTopic, field(bpf.RegSP, 0, msg(f.msgTopic)))
			capture(p, true, KafkaPartition, field(bpf.RegSP, 8, msg(f.msgPartition)))
			capture(p, true, KafkaOffset, field(bpf.RegSP, 8, msg(f.msgOffset)))
			kafkaKey(p, true, field(bpf.RegSP, 0, msg(f.msgKey)))
			p.Recipe.Keys = []string{"traceparent"}
			capture(p, true, KafkaTraceparent, bpf.Capture{Kind: bpf.CapHdrs, Reg: bpf.RegSP, Reg2: 0, Field: msg(f.msgHeaders),
				Stride: f.hdrVal + kafkaHeader, ValueAt: f.hdrVal, MaxLen: bpf.StringSlotSize})
			kafkaErrorOf(p, 0, 1, 8)
		}); err != nil {
			return nil, err
		}
	}
	if sm {
		if err := add(sarama+".(*syncProducer).SendMessage", RoleKafkaSend, func(p *probes.Probe) {
			capture(p, false, KafkaMsgTopic, field(smMsg, 0, f.pmTopic))
			// The key is an Encoder: its type word (through the itab) tells
			// a StringEncoder, whose data word points at the string.
			capture(p, false, KafkaKeyType, field(smMsg, 8, f.pmKey, 8))
			kafkaKey(p, false, field(smMsg, 0, f.pmKey+8, 0))
			capture(p, true, KafkaPartition, bpf.Capture{Kind: bpf.CapReg, Reg: 0, Size: 4})
			capture(p, true, KafkaOffset, bpf.Capture{Kind: bpf.CapReg, Reg: 1, Size: 8})
			kafkaErrorOf(p, 2, 3, 2)
		}); err != nil {
			return nil, err
		}
		if err := add(sarama+".(*syncProducer).SendMessages", RoleKafkaSend, func(p *probes.Probe) {
			capture(p, false, KafkaMsgTopic, field(smMsgs, 0, 0, f.pmTopic))
			p.Recipe.Entry = append(p.Recipe.Entry, bpf.Capture{Kind: bpf.CapReg, Reg: smCount})
			p.EntryAttrs = append(p.EntryAttrs, probes.CapturedAttr{Key: KafkaCount, Type: "int", Size: 8})
			kafkaErrorOf(p, 0, 1, 2)
		}); err != nil {
			return nil, err
		}
	}
	if sc {
		// A feeder whose select is not found (a release that changed it)
		// leaves sarama's consumers out, said in the set's reason; the
		// producers and kafka-go still apply.
		sites, err := probes.SendSites(b, saramaFeeder, int64(f.pcMessages))
		if err != nil {
			o.partial = "no sarama consumer spans: " + err.Error()
		}
		for _, site := range sites {
			p := probes.NewSiteProbe(site, id+uint32(len(out)), rt)
			msg := func(size uint8, off uint16) bpf.Capture { return field(0, size, 8, 0, off) } // cases[0].elem, then msg
			capture(p, false, KafkaMsgTopic, msg(0, f.cmTopic))
			capture(p, false, KafkaPartition, msg(4, f.cmPartition))
			capture(p, false, KafkaOffset, msg(8, f.cmOffset))
			capture(p, false, KafkaMessage, field(0, 8, 8, 0))
			kafkaKey(p, false, msg(0, f.cmKey))
			p.Recipe.Keys = []string{"traceparent"}
			capture(p, false, KafkaTraceparent, bpf.Capture{Kind: bpf.CapHdrs, Reg: 0, Hops: []uint16{8, 0}, Field: f.cmHeaders,
				Size: 8, Stride: 8, ValueAt: f.rhValue, MaxLen: bpf.StringSlotSize})
			p.Spec.Name = RoleKafkaHandoff
			p.Role = probes.Role{Kind: probes.RoleSemconv, Name: RoleKafkaHandoff}
			out = append(out, p)
		}
	}
	if len(out) == 0 && o.partial != "" {
		return nil, errors.New(o.partial) // sarama's consumers were all it had
	}
	return out, nil
}

// saramaFeeder is the function of sarama's that hands fetched messages
// to their consumer.
const saramaFeeder = sarama + ".(*partitionConsumer).responseFeeder"

// kafkaErrorOf reads a returned error (its itab and data word in
// registers itab and data), and its value as a code of codeSize bytes should
// it be a protocol error (the span side checks the type). The error's
// message goes in the string slot after the other captures'.
func kafkaErrorOf(p *probes.Probe, itab, data uint8, codeSize uint8) {
	capture(p, true, KafkaErrorCode, field(data, codeSize, 0))
	if codeSize == 2 {
		// sarama returns a failed metadata refresh as an errors.Join of
		// fmt.Errorf("%s: %w", topic, err): a *errors.joinError whose errs
		// slice (at 0) holds one *fmt.wrapError, its message first. The
		// span side checks the types.
		capture(p, true, KafkaJoinLen, field(data, 8, 8))
		capture(p, true, KafkaJoinType, field(data, 8, 0, 0, 8))
		capture(p, true, KafkaJoinMessage, field(data, 0, 0, 8, 0))
	}
	slot := uint8(0)
	for _, a := range p.ReturnAttrs {
		if a.Type == "string" || a.Type == "bytes" {
			slot++
		}
	}
	p.ErrorCapture = len(p.Recipe.Return)
	p.Recipe.Return = append(p.Recipe.Return, bpf.Capture{Kind: bpf.CapError, Reg: itab, Reg2: data, MaxLen: bpf.StringSlotSize, Slot: slot})
}

// kafkaKey reads a message's key as bytes: a binary key is no text, and no
// failed read either; the span side keeps the keys that are text.
func kafkaKey(p *probes.Probe, atReturn bool, c bpf.Capture) {
	capture(p, atReturn, KafkaKey, c)
	attrs := p.EntryAttrs
	if atReturn {
		attrs = p.ReturnAttrs
	}
	attrs[len(attrs)-1].Type = "bytes"
}
