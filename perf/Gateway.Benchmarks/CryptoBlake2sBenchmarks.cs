using BenchmarkDotNet.Attributes;
using Gateway.Crypto;

namespace Gateway.Benchmarks;

/// <summary>BLAKE2s-256 one-shot hashing (unkeyed) at WireGuard-relevant and bulk sizes.</summary>
[MemoryDiagnoser]
public class CryptoBlake2sBenchmarks
{
    private byte[] _data = [];
    private readonly byte[] _digest = new byte[Blake2s.HashSize];

    [Params(64, 1024, 8192)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Size];
        new Random(42).NextBytes(_data);
    }

    [Benchmark]
    public void Hash() => Blake2s.Hash(_data, _digest);
}

/// <summary>One compression of a 64-byte block: the Vector128 form against the scalar fallback.</summary>
[MemoryDiagnoser]
public class CryptoBlake2sCompressBenchmarks
{
    private readonly byte[] _block = new byte[64];
    private Blake2sState _state;

    [Benchmark(Baseline = true)]
    public void Scalar() => Blake2sCore.CompressScalar(ref _state, ref _block[0], 64, false);

    [Benchmark]
    public void Vector() => Blake2sVector.Compress(ref _state, ref _block[0], 64, false);
}
