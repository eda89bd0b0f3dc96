using System.Buffers.Binary;

namespace Gateway.Crypto.Tests;

/// <summary>A clock the test moves by hand; it never advances on its own.</summary>
internal sealed class ManualClock(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;
    public override DateTimeOffset GetUtcNow() => Now;
}

public class Tai64NTests
{
    [Fact]
    public void UnixEpochIsTheTai64LabelBase()
    {
        var stamp = new byte[12];
        Tai64N.Write(DateTimeOffset.UnixEpoch, stamp);
        Assert.Equal("400000000000000a00000000", Hex.Of(stamp));
    }

    [Fact]
    public void SecondsAndNanosecondsAreBigEndian()
    {
        var t = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000).AddTicks(1_234_567); // +123456700 ns
        var stamp = new byte[12];
        Tai64N.Write(t, stamp);
        Assert.Equal(0x400000000000000aUL + 1_700_000_000UL, BinaryPrimitives.ReadUInt64BigEndian(stamp));
        Assert.Equal(123_456_700u, BinaryPrimitives.ReadUInt32BigEndian(stamp.AsSpan(8)));
    }

    [Fact]
    public void ByteOrderIsTimeOrder()
    {
        var rng = new Random(7);
        var a = new byte[12];
        var b = new byte[12];
        for (int i = 0; i < 2000; i++)
        {
            var ta = DateTimeOffset.UnixEpoch.AddTicks(rng.NextInt64(0, 100L * 365 * TimeSpan.TicksPerDay));
            var tb = i % 10 == 0 ? ta : DateTimeOffset.UnixEpoch.AddTicks(rng.NextInt64(0, 100L * 365 * TimeSpan.TicksPerDay));
            Tai64N.Write(ta, a);
            Tai64N.Write(tb, b);
            Assert.Equal(ta.CompareTo(tb), Tai64N.Compare(a, b));
        }
    }

    [Fact]
    public void CompareRejectsWrongSizes()
    {
        Assert.Throws<ArgumentException>(() => Tai64N.Compare(new byte[11], new byte[12]));
        Assert.Throws<ArgumentException>(() => Tai64N.Write(DateTimeOffset.UnixEpoch, new byte[13]));
    }

    [Fact]
    public void GeneratorIsStrictlyIncreasingWhenTheClockStandsStill()
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var gen = new Tai64NGenerator(clock);
        var previous = new byte[12];
        var current = new byte[12];
        gen.Next(previous);
        for (int i = 0; i < 10_000; i++)
        {
            gen.Next(current);
            Assert.True(Tai64N.Compare(previous, current) < 0, $"stamp {i} did not increase");
            current.CopyTo(previous, 0);
        }
    }

    [Fact]
    public void GeneratorStaysIncreasingWhenTheClockStepsBack()
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
        var gen = new Tai64NGenerator(clock);
        var before = new byte[12];
        var after = new byte[12];
        gen.Next(before);
        clock.Now = clock.Now.AddHours(-1);
        gen.Next(after);
        Assert.True(Tai64N.Compare(before, after) < 0);
    }

    [Fact]
    public void GeneratorFollowsTheClockWithWhitenedNanoseconds()
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000).AddTicks(5_555_555));
        var gen = new Tai64NGenerator(clock);
        var stamp = new byte[12];
        gen.Next(stamp);
        Assert.Equal(0x400000000000000aUL + 1_700_000_000UL, BinaryPrimitives.ReadUInt64BigEndian(stamp));
        uint nanos = BinaryPrimitives.ReadUInt32BigEndian(stamp.AsSpan(8));
        Assert.Equal(0u, nanos & Tai64NGenerator.WhitenerMask);
        Assert.True(nanos <= 555_555_500u && 555_555_500u - nanos < (1u << 24));

        clock.Now = clock.Now.AddSeconds(3);
        gen.Next(stamp);
        Assert.Equal(0x400000000000000aUL + 1_700_000_003UL, BinaryPrimitives.ReadUInt64BigEndian(stamp));
    }
}
