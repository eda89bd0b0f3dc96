namespace Gateway.Node.Daemon;

/// <summary>
/// Worker threads that run the expensive middle of the daemon's two pipelines (sealing and
/// opening) in parallel, while each pipeline still delivers its batches in the order they were
/// read. The shape is wireguard-go's: a reader fills a batch and hands it to any worker, and the
/// batches leave in order; here the ordering unit is the batch and the in-order step is run by
/// whichever worker finishes the oldest outstanding batch, so no extra thread is needed for it.
/// <para>With zero workers the pool is inline: the reader runs both steps itself (the shape
/// before the pool existed, for single-core machines and comparisons).</para>
/// <para>All coordination is one monitor, taken a few times per batch (not per packet), and
/// nothing is allocated once the stages exist.</para>
/// </summary>
internal sealed class CryptoPool : IDisposable
{
    private readonly object _sync = new();
    private readonly List<IStage> _stages = [];
    private readonly List<Thread> _threads = [];
    private readonly Action<string> _onFailure;
    private bool _stopping;
    private int _idle;          // workers blocked in Monitor.Wait
    private long _pending;      // batches published and not yet claimed, over all stages (read without the lock while spinning)
    private int _cursor; // round-robin start, so that one busy stage cannot starve the other

    private const int SpinsBeforeSleep = 20;

    internal interface IStage
    {
        bool TryClaim(out long sequence);
        void Process(long sequence);
        void Finish(long sequence);
        void Stop();
    }

    /// <param name="workers">Worker threads; 0 runs everything on the calling (reader) threads.</param>
    /// <param name="onFailure">Told when a worker dies of an unexpected exception (the data path
    /// never throws on bad input; this is for bugs), so the daemon can stop instead of stalling.</param>
    public CryptoPool(int workers, Action<string> onFailure)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(workers);
        Workers = workers;
        _onFailure = onFailure;
    }

    public int Workers { get; }

    public bool Inline => Workers == 0;

    internal object Sync => _sync;

    internal bool Stopping => _stopping;

    /// <summary>A batch was published (caller holds the lock): wake one sleeping worker, if any.</summary>
    internal void OnPublished()
    {
        _pending++;
        if (_idle > 0)
        {
            Monitor.Pulse(_sync);
        }
    }

    /// <summary>Claims an unclaimed batch of <paramref name="stage"/> for the calling thread (caller holds the lock).</summary>
    internal bool TryClaimFor(IStage stage, out long sequence)
    {
        if (stage.TryClaim(out sequence))
        {
            _pending--;
            return true;
        }
        return false;
    }

    /// <summary>Creates an ordered stage with room for <c>batches.Length</c> batches in flight.</summary>
    public OrderedStage<TBatch> AddStage<TBatch>(TBatch[] batches, Action<TBatch> process, Action<TBatch> finish)
        where TBatch : class
    {
        var stage = new OrderedStage<TBatch>(this, batches, process, finish);
        lock (_sync)
        {
            _stages.Add(stage);
        }
        return stage;
    }

    /// <summary>Starts the worker threads (none when inline).</summary>
    public void Start(string namePrefix)
    {
        for (int i = 0; i < Workers; i++)
        {
            var thread = new Thread(WorkerLoop) { IsBackground = true, Name = $"{namePrefix}{i}" };
            _threads.Add(thread);
            thread.Start();
        }
    }

    private void WorkerLoop()
    {
        try
        {
            while (true)
            {
                IStage? stage = null;
                long sequence = 0;
                // Work usually follows work: look again for a short while before sleeping, which
                // saves the futex round trip of a sleep and a wake-up per batch.
                var spin = new SpinWait();
                while (Volatile.Read(ref _pending) == 0 && spin.Count < SpinsBeforeSleep && !Volatile.Read(ref _stopping))
                {
                    spin.SpinOnce(sleep1Threshold: -1);
                }
                lock (_sync)
                {
                    while (!_stopping && !TryClaimAny(out stage, out sequence))
                    {
                        _idle++;
                        Monitor.Wait(_sync);
                        _idle--;
                    }
                    if (_stopping)
                    {
                        return;
                    }
                }
                stage!.Process(sequence);
                stage.Finish(sequence);
            }
        }
        catch (Exception e)
        {
            bool stopping;
            lock (_sync)
            {
                stopping = _stopping;
            }
            if (!stopping)
            {
                _onFailure($"crypto worker {Thread.CurrentThread.Name} stopped: {e.Message}");
            }
        }
    }

    private bool TryClaimAny(out IStage? stage, out long sequence)
    {
        int count = _stages.Count;
        for (int i = 0; i < count; i++)
        {
            var candidate = _stages[(_cursor + i) % count];
            if (candidate.TryClaim(out sequence))
            {
                _pending--;
                _cursor = (_cursor + i + 1) % count;
                stage = candidate;
                return true;
            }
        }
        stage = null;
        sequence = 0;
        return false;
    }

    /// <summary>Stops the workers and wakes every producer waiting for room.</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            if (_stopping)
            {
                return;
            }
            Volatile.Write(ref _stopping, true);
            foreach (var stage in _stages)
            {
                stage.Stop();
            }
            Monitor.PulseAll(_sync);
        }
        foreach (var thread in _threads)
        {
            thread.Join(TimeSpan.FromSeconds(5));
        }
    }
}

/// <summary>
/// A bounded ring of batches between one producer (a reader thread) and the pool's workers.
/// The producer takes the next free batch (<see cref="TryAcquire"/>), fills it and publishes it;
/// a worker runs <c>process</c> on it (in parallel with other batches), and the batches then go
/// through <c>finish</c> strictly in publication order, one at a time. A full ring either makes
/// the producer wait or, when it asks not to wait, reports that so the producer can drop and
/// count what it read.
/// </summary>
internal sealed class OrderedStage<TBatch> : CryptoPool.IStage where TBatch : class
{
    private readonly CryptoPool _pool;
    private readonly TBatch[] _batches;
    private readonly bool[] _processed;
    private readonly Action<TBatch> _process;
    private readonly Action<TBatch> _finish;
    private long _published; // batches handed over by the producer
    private long _claimed;   // batches taken by workers
    private long _finished;  // batches through the in-order step
    private bool _finishing; // a worker is running the in-order step
    private bool _stopped;
    private long _waits;
    private bool _producerWaiting;
    private readonly object _roomLock = new(); // the producer sleeps here while the ring is full
    private bool _roomSignaled;

    internal OrderedStage(CryptoPool pool, TBatch[] batches, Action<TBatch> process, Action<TBatch> finish)
    {
        ArgumentOutOfRangeException.ThrowIfZero(batches.Length);
        _pool = pool;
        _batches = batches;
        _processed = new bool[batches.Length];
        _process = process;
        _finish = finish;
    }

    /// <summary>Batches in the ring.</summary>
    public int Capacity => _batches.Length;

    /// <summary>How often the producer found the ring full and had to wait.</summary>
    public long FullWaits => Interlocked.Read(ref _waits);

    /// <summary>Batches published and not yet through the in-order step.</summary>
    public int InFlight
    {
        get
        {
            lock (_pool.Sync)
            {
                return (int)(_published - _finished);
            }
        }
    }

    /// <summary>
    /// The batch to fill next, or null when the ring is full and <paramref name="wait"/> is false,
    /// or the pool is stopping. Producer thread only; the batch must then be published.
    /// </summary>
    public TBatch? TryAcquire(bool wait)
    {
        if (_pool.Inline)
        {
            return _batches[0];
        }
        bool counted = false;
        while (true)
        {
            lock (_pool.Sync)
            {
                if (_stopped)
                {
                    return null;
                }
                if (_published - _finished < _batches.Length)
                {
                    return _batches[_published % _batches.Length];
                }
                if (!wait)
                {
                    return null;
                }
                if (!counted)
                {
                    counted = true;
                    Interlocked.Increment(ref _waits);
                }
                _producerWaiting = true;
            }
            lock (_roomLock)
            {
                while (!_roomSignaled)
                {
                    Monitor.Wait(_roomLock);
                }
                _roomSignaled = false;
            }
        }
    }

    /// <summary>Hands the batch returned by <see cref="TryAcquire"/> over to the workers.</summary>
    public void Publish(TBatch batch)
    {
        if (_pool.Inline)
        {
            _process(batch);
            _finish(batch);
            return;
        }
        long helped = -1;
        lock (_pool.Sync)
        {
            if (!ReferenceEquals(batch, _batches[_published % _batches.Length]))
            {
                throw new InvalidOperationException("Publish the batch TryAcquire returned.");
            }
            _published++;
            _pool.OnPublished();
            // The workers are behind (an older batch still waits for one): the producer does this
            // stage's oldest waiting batch itself instead of reading more, so the ring drains.
            if (_claimed + 1 < _published && _pool.TryClaimFor(this, out long sequence))
            {
                helped = sequence;
            }
        }
        if (helped >= 0)
        {
            var stage = (CryptoPool.IStage)this;
            stage.Process(helped);
            stage.Finish(helped);
        }
    }

    bool CryptoPool.IStage.TryClaim(out long sequence)
    {
        // Called under the pool's lock.
        if (_claimed < _published)
        {
            sequence = _claimed++;
            return true;
        }
        sequence = 0;
        return false;
    }

    void CryptoPool.IStage.Process(long sequence) => _process(_batches[sequence % _batches.Length]);

    void CryptoPool.IStage.Finish(long sequence)
    {
        lock (_pool.Sync)
        {
            _processed[sequence % _batches.Length] = true;
            if (_finishing)
            {
                return; // the worker in the in-order step will reach this batch
            }
            _finishing = true;
        }
        while (true)
        {
            TBatch next;
            lock (_pool.Sync)
            {
                int slot = (int)(_finished % _batches.Length);
                if (_finished == _claimed || !_processed[slot])
                {
                    _finishing = false;
                    return;
                }
                next = _batches[slot];
            }
            try
            {
                _finish(next);
            }
            finally
            {
                bool wake;
                lock (_pool.Sync)
                {
                    _processed[_finished % _batches.Length] = false;
                    _finished++;
                    wake = _producerWaiting;
                    _producerWaiting = false;
                }
                if (wake)
                {
                    SignalRoom();
                }
            }
        }
    }

    private void SignalRoom()
    {
        lock (_roomLock)
        {
            _roomSignaled = true;
            Monitor.Pulse(_roomLock);
        }
    }

    void CryptoPool.IStage.Stop()
    {
        _stopped = true;
        SignalRoom();
    }
}
