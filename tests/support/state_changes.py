"""Random changes of every kind to an agent's record (agent.state.AgentState),
for the tests of its rendering, its writer and its log."""

from spdk_backend.agent import state as agent_state


def random_change(st, rnd, step, names, pending=False):
    """One change chosen by ``rnd``: a bdev and its controller created, resized,
    QoS or coalescing set, created again under a name it had, an rbd cluster
    registered, a call left pending (``pending``), or a pair deleted (and
    sometimes created again at the end of the order).  ``names`` holds the
    live bdev names and is kept up to date."""
    op = rnd.random()
    if op < 0.35 or not names:
        name = "b%d" % step
        st.add_bdev(name, "bdev_malloc_create", {"name": name, "num_blocks": step + 1,
                                                 "block_size": 512})
        st.add_ctrlr("c" + name, {"ctrlr": "c" + name, "dev_name": name})
        names.append(name)
    elif op < 0.45:
        st.update_bdev(rnd.choice(names), num_blocks=rnd.randint(1, 1 << 20))
    elif op < 0.55:
        st.set_qos(rnd.choice(names), {"rw_ios_per_sec": rnd.choice([0, 1000, 2000])})
    elif op < 0.65:
        st.set_coalescing("c" + rnd.choice(names), rnd.randint(0, 50), 1000)
    elif op < 0.7:
        # Created again under a name it had: keeps its place.
        name = rnd.choice(names)
        st.add_bdev(name, "bdev_null_create", {"name": name, "num_blocks": step})
        st.add_ctrlr("c" + name, {"ctrlr": "c" + name, "dev_name": name, "step": step})
    elif op < 0.75:
        st.add_bdev(agent_state.CLUSTER_KEY + "k%d" % step, "bdev_rbd_register_cluster",
                    {"name": "k%d" % step, "user_id": "admin"})
    elif op < 0.78 and pending:
        st.add_pending("bdev", {"method": "bdev_uring_create",
                                "params": {"name": "u%d" % step, "filename": "/x"}})
    else:
        name = names.pop(rnd.randrange(len(names)))
        st.remove_ctrlr("c" + name)
        st.remove_bdev(name)
        # ... and sometimes again, at the end of the order.
        if rnd.random() < 0.3:
            st.add_bdev(name, "bdev_null_create", {"name": name, "num_blocks": 1})
