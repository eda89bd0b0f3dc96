using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Gateway.Crypto.Tests;

/// <summary>
/// Differential properties: our BLAKE2s against BouncyCastle's independent Blake2sDigest.
/// </summary>
public class Blake2sPropertyTests
{
    public sealed record HashCase(byte[] Key, byte[] Data, int OutputLength, int[] Chunks)
    {
        public override string ToString() =>
            $"key={Key.Length}B data={Data.Length}B out={OutputLength} chunks=[{string.Join(",", Chunks)}]";
    }

    private static readonly Gen<byte> Bytes = ArbMap.Default.GeneratorFor<byte>();

    /// <summary>Lengths around and across block boundaries (0..600 bytes) and random chunkings.</summary>
    private static Gen<HashCase> Cases(bool keyed) =>
        from keyLength in keyed ? Gen.Choose(1, 32) : Gen.Constant(0)
        from key in Gen.ArrayOf(Bytes, keyLength)
        from dataLength in Gen.OneOf(Gen.Choose(0, 130), Gen.Choose(0, 600))
        from data in Gen.ArrayOf(Bytes, dataLength)
        from outputLength in Gen.Choose(1, 32)
        from chunks in Gen.ArrayOf(Gen.Choose(0, 150), 12)
        select new HashCase(key, data, outputLength, chunks);

    [Property(MaxTest = 200)]
    public Property UnkeyedMatchesBouncyCastle() =>
        Prop.ForAll(Cases(keyed: false).ToArbitrary(), Check);

    [Property(MaxTest = 200)]
    public Property KeyedMatchesBouncyCastle() =>
        Prop.ForAll(Cases(keyed: true).ToArbitrary(), Check);

    /// <summary>The Vector128 compression function agrees with the scalar one on any block, counter and flag.</summary>
    [Property(MaxTest = 300)]
    public Property VectorCompressionMatchesScalar() =>
        Prop.ForAll(
            (from block in Gen.ArrayOf(Bytes, 64)
             from state in Gen.ArrayOf(ArbMap.Default.GeneratorFor<uint>(), 8)
             from counter in ArbMap.Default.GeneratorFor<ulong>()
             from isFinal in ArbMap.Default.GeneratorFor<bool>()
             select (block, state, counter, isFinal)).ToArbitrary(),
            c =>
            {
                Blake2sState scalar = default, vector = default;
                for (int i = 0; i < 8; i++)
                {
                    scalar[i] = c.state[i];
                    vector[i] = c.state[i];
                }
                Blake2sCore.CompressScalar(ref scalar, ref c.block[0], c.counter, c.isFinal);
                Blake2sVector.Compress(ref vector, ref c.block[0], c.counter, c.isFinal);
                for (int i = 0; i < 8; i++)
                {
                    if (scalar[i] != vector[i])
                    {
                        return false;
                    }
                }
                return true;
            });

    private static bool Check(HashCase c)
    {
        string expected = Hex.Of(Blake2sTests.Reference(c.Key, c.Data, c.OutputLength));

        var oneShot = new byte[c.OutputLength];
        Blake2s.Hash(c.Key, c.Data, oneShot);

        // Incremental with the generated chunk sizes (zero-length updates included), rest at the end.
        var hasher = new Blake2sHasher(c.OutputLength, c.Key);
        int offset = 0;
        foreach (int chunk in c.Chunks)
        {
            int n = Math.Min(chunk, c.Data.Length - offset);
            hasher.Update(c.Data.AsSpan(offset, n));
            offset += n;
        }
        hasher.Update(c.Data.AsSpan(offset));
        var incremental = new byte[c.OutputLength];
        hasher.Finish(incremental);

        return Hex.Of(oneShot) == expected && Hex.Of(incremental) == expected;
    }
}
