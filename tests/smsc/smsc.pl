#!/usr/bin/perl
# A test SMSC: a small SMPP 3.4 server that records every submit_sm as a JSON
# line and decodes the text with Perl's Encode (gsm0338, UTF-16BE). It shares
# no code with Postern's Rust SMS code on purpose: see README.md beside it.
#
#   perl tests/smsc/smsc.pl --listen 127.0.0.1:0 --system-id ID --password PW \
#       --record FILE [--packed] [--fail DEST=STATUS]... [--throttle N] \
#       [--receipt-delay-ms MS]
#
# One process, one select loop: message ids, --throttle and reassembly are
# counted over the whole process, across connections.
use strict;
use warnings;
use Getopt::Long qw(GetOptions);
use IO::Select;
use Encode ();
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use Net::SMPP;

$SIG{PIPE} = 'IGNORE';

# ---------------------------------------------------------------- options

my ($listen, $system_id, $password, $record);
my $packed = 0;
my @fail;
my $throttle = 0;
my $receipt_delay_ms = 0;
GetOptions(
    'listen=s'           => \$listen,
    'system-id=s'        => \$system_id,
    'password=s'         => \$password,
    'record=s'           => \$record,
    'packed'             => \$packed,
    'fail=s'             => \@fail,
    'throttle=i'         => \$throttle,
    'receipt-delay-ms=i' => \$receipt_delay_ms,
) or usage();
usage() unless defined $listen && defined $system_id && defined $password && defined $record;

sub usage {
    print STDERR "usage: smsc.pl --listen HOST:PORT --system-id ID --password PW --record FILE"
      . " [--packed] [--fail DEST=STATUS]... [--throttle N] [--receipt-delay-ms MS]\n";
    exit 2;
}

sub parse_status {
    my ($s) = @_;
    return hex($s) if $s =~ /^0[xX][0-9a-fA-F]+$/;
    return $s + 0 if $s =~ /^\d+$/;
    die "smsc: bad status '$s' (hex like 0x0B or decimal)\n";
}

# destination without a leading '+' => status
my %fail_status;
for my $f (@fail) {
    my ($dest, $status) = $f =~ /^(.*)=([^=]+)$/ or die "smsc: bad --fail '$f' (DEST=STATUS)\n";
    (my $bare = $dest) =~ s/^\+//;
    $fail_status{$bare} = parse_status($status);
}

my ($host, $port) = $listen =~ /^(.*):(\d+)$/ or die "smsc: bad --listen '$listen' (HOST:PORT)\n";

# ---------------------------------------------------------------- SMPP constants

use constant {
    CMD_BIND_RECEIVER    => 0x00000001,
    CMD_BIND_TRANSMITTER => 0x00000002,
    CMD_SUBMIT_SM        => 0x00000004,
    CMD_DELIVER_SM       => 0x00000005,
    CMD_UNBIND           => 0x00000006,
    CMD_BIND_TRANSCEIVER => 0x00000009,
    CMD_ENQUIRE_LINK     => 0x00000015,
    CMD_GENERIC_NACK     => 0x80000000,
    RESP_BIT             => 0x80000000,

    ESME_ROK          => 0x00000000,
    ESME_RINVMSGLEN   => 0x00000001,
    ESME_RINVCMDLEN   => 0x00000002,
    ESME_RINVCMDID    => 0x00000003,
    ESME_RINVBNDSTS   => 0x00000004,
    ESME_RALYBND      => 0x00000005,
    ESME_RINVPASWD    => 0x0000000E,
    ESME_RINVSYSID    => 0x0000000F,
    ESME_RTHROTTLED   => 0x00000058,

    TLV_MESSAGE_PAYLOAD => 0x0424,
    MAX_PDU             => 64 * 1024,
};

my %bind_mode = (
    CMD_BIND_RECEIVER()    => 'receiver',
    CMD_BIND_TRANSMITTER() => 'transmitter',
    CMD_BIND_TRANSCEIVER() => 'transceiver',
);

# ---------------------------------------------------------------- record file

open(my $rec, '>>', $record) or die "smsc: cannot open record file $record: $!\n";
binmode $rec;
$rec->autoflush(1);

my $json = JSON::PP->new->utf8->allow_nonref->canonical;

# Writes one JSON object with its keys in the order given.
sub record {
    my @kv = @_;
    my @parts;
    while (@kv) {
        my ($k, $v) = splice @kv, 0, 2;
        push @parts, $json->encode($k) . ':' . $json->encode($v);
    }
    print {$rec} '{' . join(',', @parts) . "}\n";
}

# ---------------------------------------------------------------- decoding

# GSM 03.38 septets (one per octet, values 0..0x7F) to text, via Encode's
# gsm0338 (default alphabet plus the extension table behind ESC 0x1B).
sub decode_gsm_septets {
    my ($octets) = @_;
    if ($octets =~ /([\x80-\xff])/) {
        die sprintf("octet 0x%02X is not a GSM 7-bit septet\n", ord $1);
    }
    my $copy = $octets;
    my $text = eval { Encode::decode('gsm0338', $copy, Encode::FB_CROAK | Encode::LEAVE_SRC) };
    die "gsm0338: " . clean_err($@) . "\n" unless defined $text;
    return $text;
}

sub decode_ucs2 {
    my ($octets) = @_;
    my $copy = $octets;
    my $text = eval { Encode::decode('UTF-16BE', $copy, Encode::FB_CROAK | Encode::LEAVE_SRC) };
    die clean_err($@) . "\n" unless defined $text;
    return $text;
}

sub clean_err {
    my ($e) = @_;
    $e =~ s/ at \S+ line \d+\.?\s*$//s;
    $e =~ s/\s+$//;
    return $e;
}

# GSM 03.38 packing, 6.1.2.1: septet i occupies bits 7i..7i+6 of the user data,
# bit p being bit (p mod 8) (LSB = 0) of octet (p div 8). The UDH (if any) sits
# in whole octets at the front; septet data starts at the first septet
# boundary after it (TS 23.040 9.2.3.24: fill bits). Returns the septets one
# per octet.
sub unpack_septets {
    my ($ud, $udh_octets) = @_;
    my $total_bits = length($ud) * 8;
    my $start_septet = int(($udh_octets * 8 + 6) / 7);
    my $nsept = int($total_bits / 7) - $start_septet;
    my @bytes = unpack('C*', $ud);
    my @out;
    for my $i (0 .. $nsept - 1) {
        my $bit = ($start_septet + $i) * 7;
        my $o = $bit >> 3;
        my $sh = $bit & 7;
        my $v = $bytes[$o] >> $sh;
        $v |= $bytes[$o + 1] << (8 - $sh) if $sh > 1 && $o + 1 < @bytes;
        push @out, $v & 0x7F;
    }
    # When the septets end exactly on the last bit of the data, the last
    # septet may be padding: 7 zero bits (would read as '@') or a <CR>
    # (TS 23.038 6.1.2.3.1). SMPP carries only an octet length, so this is
    # ambiguous; we take it as padding.
    if (@out && ($total_bits % 7) == 0 && ($out[-1] == 0x00 || $out[-1] == 0x0D)) {
        pop @out;
    }
    return pack('C*', @out);
}

# Parses the UDH at the front of $ud. Returns (udh hashref, header octet count).
sub parse_udh {
    my ($ud) = @_;
    die "UDHI set but no user data\n" if length($ud) < 1;
    my $udhl = ord substr($ud, 0, 1);
    die "UDH length $udhl exceeds the message (" . length($ud) . " octets)\n" if 1 + $udhl > length($ud);
    my $h = substr($ud, 1, $udhl);
    my %udh = (iei => undef, ref => undef, total => undef, seq => undef, hex => unpack('H*', substr($ud, 0, 1 + $udhl)));
    my $i = 0;
    while ($i < length $h) {
        die "truncated information element in UDH\n" if $i + 2 > length $h;
        my ($iei, $iedl) = unpack('CC', substr($h, $i, 2));
        die "information element 0x" . sprintf('%02X', $iei) . " overruns the UDH\n" if $i + 2 + $iedl > length $h;
        my $ied = substr($h, $i + 2, $iedl);
        if ($iei == 0x00) {
            die "IEI 0x00 with length $iedl (want 3)\n" if $iedl != 3;
            @udh{qw(iei ref total seq)} = (0, unpack('CCC', $ied));
        } elsif ($iei == 0x08) {
            die "IEI 0x08 with length $iedl (want 4)\n" if $iedl != 4;
            @udh{qw(iei ref total seq)} = (8, unpack('nCC', $ied));
        }
        $i += 2 + $iedl;
    }
    return (\%udh, 1 + $udhl);
}

# ---------------------------------------------------------------- state

my $listener = Net::SMPP->new_listen($host, port => $port, smpp_version => 0x34)
  or die "smsc: cannot listen on $listen: $!\n";
my $sel = IO::Select->new($listener);

my %conn;            # fileno => { sock, buf, mode, id }
my $conn_counter = 0;
my $message_counter = 0;
my $submit_counter = 0;
my %partial;         # "src\0dst\0ref" => { total, data_coding, parts => {seq => text}, errors => [] }
my @pending;         # receipts: { due, conn_id, fileno, ... }

$| = 1;
print "smsc: listening " . $listener->sockhost . ':' . $listener->sockport . "\n";

my $running = 1;
$SIG{TERM} = $SIG{INT} = sub { $running = 0 };

# ---------------------------------------------------------------- main loop

while ($running) {
    my $timeout = undef;
    if (@pending) {
        my $now = Time::HiRes::time();
        my ($next) = sort { $a <=> $b } map { $_->{due} } @pending;
        $timeout = $next - $now;
        $timeout = 0 if $timeout < 0;
    }
    my @ready = $sel->can_read($timeout);
    for my $s (@ready) {
        if ($s == $listener) {
            my $c = $listener->accept or next;
            $c->autoflush(1);
            $conn{ fileno $c } = { sock => $c, buf => '', mode => undef, id => ++$conn_counter };
            $sel->add($c);
            next;
        }
        my $st = $conn{ fileno $s } or next;
        my $n = sysread($s, my $chunk, 65536);
        if (!$n) {
            close_conn($st);
            next;
        }
        $st->{buf} .= $chunk;
        while (length($st->{buf}) >= 16 && $conn{ fileno $s }) {
            my ($len) = unpack('N', $st->{buf});
            if ($len < 16 || $len > MAX_PDU) {
                # Unframeable: answer generic_nack and drop the connection.
                my (undef, undef, undef, $seq) = unpack('NNNN', $st->{buf});
                $s->resp_backend(CMD_GENERIC_NACK, '', $s, seq => $seq, status => ESME_RINVCMDLEN);
                record(event => 'generic_nack', command_id => undef, seq => $seq, status => ESME_RINVCMDLEN,
                       reason => "command_length $len");
                close_conn($st);
                last;
            }
            last if length($st->{buf}) < $len;
            my $raw = substr($st->{buf}, 0, $len, '');
            # A PDU this SMSC cannot handle must not stop it for the other connections.
            eval { handle_pdu($st, $raw); 1 } or do {
                (my $err = $@) =~ s/\n$//;
                record(event => 'internal_error', error => $err, pdu_hex => unpack('H*', $raw));
                print STDERR "smsc: $err\n";
            };
        }
    }
    run_due_receipts();
}

for my $st (values %conn) { close $st->{sock} }
close $rec;
exit 0;

sub close_conn {
    my ($st) = @_;
    $sel->remove($st->{sock});
    delete $conn{ fileno $st->{sock} };
    close $st->{sock};
}

# ---------------------------------------------------------------- PDUs

sub handle_pdu {
    my ($st, $raw) = @_;
    my $s = $st->{sock};
    my ($len, $cmd, $status, $seq) = unpack('NNNN', $raw);
    my $pdu = { cmd => $cmd, status => $status, seq => $seq, data => substr($raw, 16) };

    my $tab = Net::SMPP::pdu_tab()->{$cmd};
    if ($tab) {
        # Net::SMPP's own decoders for the mandatory part, then its TLV decoder.
        my $mandatory = eval { $tab->{decode}->($pdu, $s) };
        if (!defined $mandatory || $mandatory > length $pdu->{data}) {
            if (!($cmd & RESP_BIT)) {
                $s->resp_backend(CMD_GENERIC_NACK, '', $s, seq => $seq, status => ESME_RINVCMDLEN);
                record(event => 'generic_nack', command_id => sprintf('0x%08X', $cmd), seq => $seq,
                       status => ESME_RINVCMDLEN, reason => 'malformed body');
            }
            return;
        }
        local $SIG{__WARN__} = sub { };    # unknown TLVs: kept by numeric tag
        Net::SMPP::decode_optional_params($pdu, $mandatory) if $mandatory < length $pdu->{data};
    }

    if ($bind_mode{$cmd}) {
        return handle_bind($st, $pdu, $bind_mode{$cmd});
    } elsif ($cmd == CMD_SUBMIT_SM) {
        return handle_submit($st, $pdu);
    } elsif ($cmd == CMD_ENQUIRE_LINK) {
        record(event => 'enquire_link', seq => $seq);
        $s->enquire_link_resp(seq => $seq);
        return;
    } elsif ($cmd == CMD_UNBIND) {
        record(event => 'unbind', seq => $seq, conn => $st->{id});
        $s->unbind_resp(seq => $seq);
        close_conn($st);
        return;
    } elsif ($cmd == (CMD_DELIVER_SM | RESP_BIT)) {
        record(event => 'deliver_sm_resp', seq => $seq, status => $status, conn => $st->{id});
        return;
    } elsif ($cmd & RESP_BIT) {
        return;    # other responses (enquire_link_resp, ...) need nothing
    }
    $s->resp_backend(CMD_GENERIC_NACK, '', $s, seq => $seq, status => ESME_RINVCMDID);
    record(event => 'generic_nack', command_id => sprintf('0x%08X', $cmd), seq => $seq, status => ESME_RINVCMDID);
}

sub handle_bind {
    my ($st, $pdu, $mode) = @_;
    my $s = $st->{sock};
    my $resp_cmd = $pdu->{cmd} | RESP_BIT;
    my $status = ESME_ROK;
    my $reason;
    if (defined $st->{mode}) {
        ($status, $reason) = (ESME_RALYBND, 'already bound');
    } elsif ($pdu->{system_id} ne $system_id) {
        ($status, $reason) = (ESME_RINVSYSID, 'bad system_id');
    } elsif ($pdu->{password} ne $password) {
        ($status, $reason) = (ESME_RINVPASWD, 'bad password');
    }
    if ($status == ESME_ROK) {
        $st->{mode} = $mode;
        # Body: system_id, then the sc_interface_version TLV (0x0210 = 0x34).
        record(event => 'bind', ok => JSON::PP::true, mode => $mode, system_id => $pdu->{system_id},
               seq => $pdu->{seq}, status => 0, conn => $st->{id});
        $s->resp_backend($resp_cmd, pack('Z*', 'postern-smsc') . pack('nnC', 0x0210, 1, 0x34),
                         $s, seq => $pdu->{seq});
    } else {
        # SMPP 3.4 4.1: no body when command_status is not 0.
        record(event => 'bind', ok => JSON::PP::false, mode => $mode, system_id => $pdu->{system_id},
               seq => $pdu->{seq}, status => $status, reason => $reason, conn => $st->{id});
        $s->resp_backend($resp_cmd, '', $s, seq => $pdu->{seq}, status => $status);
    }
}

sub handle_submit {
    my ($st, $pdu) = @_;
    my $s = $st->{sock};
    my $seq = $pdu->{seq};

    # Status to answer.
    my $status = ESME_ROK;
    my $dest = $pdu->{destination_addr};
    (my $bare_dest = $dest) =~ s/^\+//;
    if (!defined $st->{mode} || $st->{mode} eq 'receiver') {
        $status = ESME_RINVBNDSTS;
    } elsif (++$submit_counter <= $throttle) {
        $status = ESME_RTHROTTLED;
    } elsif (exists $fail_status{$bare_dest}) {
        $status = $fail_status{$bare_dest};
    }

    # Payload: short_message, or the message_payload TLV when that is empty.
    my $payload = $pdu->{short_message};
    my $from_tlv = JSON::PP::false;
    if ($payload eq '' && defined $pdu->{+TLV_MESSAGE_PAYLOAD}) {
        $payload = $pdu->{+TLV_MESSAGE_PAYLOAD};
        $from_tlv = JSON::PP::true;
    }

    # UDH, then the text of this segment.
    my ($udh, $udh_octets, $text, $error) = (undef, 0, undef, undef);
    eval {
        if ($pdu->{esm_class} & 0x40) {
            ($udh, $udh_octets) = parse_udh($payload);
        }
        my $dc = $pdu->{data_coding};
        if ($dc == 0x00 || $dc == 0x01) {
            my $septets = $packed ? unpack_septets($payload, $udh_octets) : substr($payload, $udh_octets);
            $text = decode_gsm_septets($septets);
        } elsif ($dc == 0x08) {
            $text = decode_ucs2(substr($payload, $udh_octets));
        } else {
            die sprintf("data_coding 0x%02X is not decoded by this SMSC\n", $dc);
        }
        1;
    } or do {
        ($error = $@) =~ s/\n$//;
        $text = undef;
    };

    my $message_id = $status == ESME_ROK ? 'm' . ++$message_counter : undef;
    # Everything is recorded before the response goes out: a client that has
    # its answer finds the record already written.
    my $respond = sub {
        if (defined $message_id) {
            $s->submit_sm_resp(seq => $seq, message_id => $message_id);
        } else {
            # SMPP 3.4 4.4.2: no body when command_status is not 0.
            $s->resp_backend(CMD_SUBMIT_SM | RESP_BIT, '', $s, seq => $seq, status => $status);
        }
    };

    my $concat = $udh && defined $udh->{iei};
    record(
        event               => 'submit_sm',
        seq                 => $seq,
        status              => $status,
        message_id          => $message_id,
        service_type        => $pdu->{service_type},
        source_addr_ton     => $pdu->{source_addr_ton},
        source_addr_npi     => $pdu->{source_addr_npi},
        source_addr         => $pdu->{source_addr},
        dest_addr_ton       => $pdu->{dest_addr_ton},
        dest_addr_npi       => $pdu->{dest_addr_npi},
        destination_addr    => $dest,
        esm_class           => $pdu->{esm_class},
        protocol_id         => $pdu->{protocol_id},
        priority_flag       => $pdu->{priority_flag},
        registered_delivery => $pdu->{registered_delivery},
        data_coding         => $pdu->{data_coding},
        message_payload     => $from_tlv,
        short_message_hex   => unpack('H*', $payload),
        udh                 => $udh,
        text                => $text,
        (defined $error ? (error => $error) : ()),
        conn                => $st->{id},
    );

    if ($status != ESME_ROK) {
        $respond->();
        return;
    }

    if ($concat) {
        reassemble($pdu, $udh, $text, $error, $message_id);
    } else {
        record(
            event       => 'message',
            destination => $dest,
            source      => $pdu->{source_addr},
            ref         => undef,
            segments    => 1,
            data_coding => $pdu->{data_coding},
            text        => $text,
            (defined $error ? (error => $error) : ()),
            message_ids => [$message_id],
        );
    }
    $respond->();

    if (($pdu->{registered_delivery} & 0x01) && $st->{mode} eq 'transmitter') {
        # A transmitter bind cannot take a deliver_sm.
        record(event => 'receipt_skipped', message_id => $message_id, reason => 'bound as transmitter');
    } elsif ($pdu->{registered_delivery} & 0x01) {
        push @pending, {
            due        => Time::HiRes::time() + $receipt_delay_ms / 1000,
            conn_id    => $st->{id},
            message_id => $message_id,
            source     => $pdu->{source_addr},
            source_ton => $pdu->{source_addr_ton},
            source_npi => $pdu->{source_addr_npi},
            dest       => $dest,
            dest_ton   => $pdu->{dest_addr_ton},
            dest_npi   => $pdu->{dest_addr_npi},
            submitted  => time(),
        };
        run_due_receipts();
    }
}

sub reassemble {
    my ($pdu, $udh, $text, $error, $message_id) = @_;
    my $dest = $pdu->{destination_addr};
    my $src = $pdu->{source_addr};
    my ($ref, $total, $seg) = @{$udh}{qw(ref total seq)};
    my @base = (destination => $dest, source => $src, ref => $ref);

    if ($total < 1 || $seg < 1 || $seg > $total) {
        record(event => 'message_error', @base, segments => $total, seq => $seg,
               error => "segment $seg out of range 1..$total");
        return;
    }
    my $key = join("\0", $src, $dest, $ref);
    my $p = $partial{$key} ||= { total => $total, data_coding => $pdu->{data_coding}, parts => {}, ids => {} };
    if ($p->{total} != $total) {
        record(event => 'message_error', @base, segments => $total, seq => $seg,
               error => "total $total differs from $p->{total} in earlier segments");
        return;
    }
    if ($p->{data_coding} != $pdu->{data_coding}) {
        record(event => 'message_error', @base, segments => $total, seq => $seg,
               error => "data_coding $pdu->{data_coding} differs from $p->{data_coding} in earlier segments");
    }
    if (exists $p->{parts}{$seg}) {
        record(event => 'message_error', @base, segments => $total, seq => $seg,
               error => "duplicate segment $seg");
        return;
    }
    $p->{parts}{$seg} = { text => $text, error => $error };
    $p->{ids}{$seg} = $message_id;
    return if keys %{ $p->{parts} } < $total;

    delete $partial{$key};
    my @errors = map { "segment $_: $p->{parts}{$_}{error}" } grep { defined $p->{parts}{$_}{error} } 1 .. $total;
    my $full = @errors ? undef : join('', map { $p->{parts}{$_}{text} } 1 .. $total);
    record(
        event       => 'message',
        @base,
        segments    => $total,
        data_coding => $p->{data_coding},
        text        => $full,
        (@errors ? (error => join('; ', @errors)) : ()),
        message_ids => [map { $p->{ids}{$_} } 1 .. $total],
    );
}

# ---------------------------------------------------------------- receipts

sub run_due_receipts {
    my $now = Time::HiRes::time();
    my @later;
    for my $r (@pending) {
        if ($r->{due} > $now) { push @later, $r; next }
        send_receipt($r);
    }
    @pending = @later;
}

sub send_receipt {
    my ($r) = @_;
    my ($st) = grep { $_->{id} == $r->{conn_id} } values %conn;
    if (!$st) {
        record(event => 'receipt_skipped', message_id => $r->{message_id}, reason => 'connection closed');
        return;
    }
    my $fmt = '%y%m%d%H%M';
    my $submit_date = POSIX::strftime($fmt, gmtime($r->{submitted}));
    my $done_date = POSIX::strftime($fmt, gmtime());
    my $sm = "id:$r->{message_id} sub:001 dlvrd:001 submit date:$submit_date done date:$done_date"
      . " stat:DELIVRD err:000 text:";
    my $s = $st->{sock};
    my $seq = $s->deliver_sm(
        async                => 1,
        service_type         => '',
        source_addr_ton      => $r->{dest_ton},
        source_addr_npi      => $r->{dest_npi},
        source_addr          => $r->{dest},
        dest_addr_ton        => $r->{source_ton},
        dest_addr_npi        => $r->{source_npi},
        destination_addr     => $r->{source},
        esm_class            => 0x04,
        protocol_id          => 0,
        priority_flag        => 0,
        schedule_delivery_time => '',
        validity_period      => '',
        registered_delivery  => 0,
        replace_if_present_flag => 0,
        data_coding          => 0,
        sm_default_msg_id    => 0,
        short_message        => $sm,
        receipted_message_id => $r->{message_id} . "\0",
        message_state        => pack('C', 2),
    );
    record(event => 'receipt_sent', message_id => $r->{message_id}, seq => $seq, short_message => $sm,
           conn => $st->{id});
}
